package zeek

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/threatbus/threatbus/messages/stix"
	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

// mapSighting turns Tenzir::sighting(ts, intel_id, context) into a STIX
// Sighting: sighting_of_ref = intel_id, last_seen = ts,
// x_threatbus_sighting_context = context as JSON, x_threatbus_source =
// source. On failure it returns the rej* cause.
func mapSighting(ev bj.Event, source string) ([]byte, string, error) {
	if len(ev.Args) != 3 {
		return nil, rejBadSighting, fmt.Errorf("%s takes 3 arguments (ts, intel_id, context), got %d", ev.Name, len(ev.Args))
	}
	ts, ok := ev.Args[0].(bj.Timestamp)
	if !ok {
		return nil, rejBadSighting, fmt.Errorf("%s: ts is a %s, want a timestamp", ev.Name, ev.Args[0].Type())
	}
	id, ok := ev.Args[1].(bj.String)
	if !ok {
		return nil, rejBadSighting, fmt.Errorf("%s: intel_id is a %s, want a string", ev.Name, ev.Args[1].Type())
	}
	var opts []stix.Option
	if source != "" {
		opts = append(opts, stix.WithSource(source))
	}
	if _, none := ev.Args[2].(bj.None); !none {
		ctx, err := contextJSON(nil, ev.Args[2])
		if err != nil {
			return nil, rejBadSighting, fmt.Errorf("%s: context: %w", ev.Name, err)
		}
		if string(ctx) != "[]" { // STIX forbids empty lists
			opts = append(opts, stix.WithContext(ctx))
		}
	}
	s, err := stix.NewSighting(string(id), ts.Time, opts...)
	if err != nil {
		return nil, rejInvalidSight, err
	}
	return s.Raw, "", nil
}

// contextJSON renders a Zeek value as plain JSON, the way Zeek's JSON logs
// would where they can: a table with string keys is an object, other
// tables are lists of [key, value] pairs, sets and vectors are lists,
// times are RFC 3339 strings, intervals are seconds, addresses, subnets,
// ports and enums are strings. Non-finite reals, which JSON lacks, are
// strings too.
func contextJSON(dst []byte, v bj.Value) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return nil, errors.New("missing value")
	case bj.None:
		return append(dst, "null"...), nil
	case bj.Boolean:
		return strconv.AppendBool(dst, bool(x)), nil
	case bj.Count:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case bj.Integer:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case bj.Real:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return bj.AppendString(dst, strconv.FormatFloat(f, 'g', -1, 64)), nil
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64), nil
	case bj.Timespan:
		return strconv.AppendFloat(dst, float64(x)/1e9, 'f', -1, 64), nil
	case bj.Timestamp:
		if y := x.UTC().Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("time %v out of range", x.Time)
		}
		return bj.AppendString(dst, stix.FormatTimestamp(x.Time)), nil
	case bj.String:
		return bj.AppendString(dst, string(x)), nil
	case bj.EnumValue:
		return bj.AppendString(dst, string(x)), nil
	case bj.Address:
		return bj.AppendString(dst, x.String()), nil
	case bj.Subnet:
		return bj.AppendString(dst, x.String()), nil
	case bj.Port:
		return bj.AppendString(dst, strconv.Itoa(int(x.Number))+"/"+x.Protocol.String()), nil
	case bj.Vector:
		return listJSON(dst, x)
	case bj.Set:
		return listJSON(dst, x)
	case bj.Table:
		keys := map[string]bool{}
		object := true
		for _, e := range x {
			k, ok := e.Key.(bj.String)
			if !ok || keys[string(k)] {
				object = false
				break
			}
			keys[string(k)] = true
		}
		var err error
		if object {
			dst = append(dst, '{')
			for i, e := range x {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = bj.AppendString(dst, string(e.Key.(bj.String)))
				dst = append(dst, ':')
				if dst, err = contextJSON(dst, e.Value); err != nil {
					return nil, err
				}
			}
			return append(dst, '}'), nil
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '[')
			if dst, err = contextJSON(dst, e.Key); err != nil {
				return nil, err
			}
			dst = append(dst, ',')
			if dst, err = contextJSON(dst, e.Value); err != nil {
				return nil, err
			}
			dst = append(dst, ']')
		}
		return append(dst, ']'), nil
	}
	return nil, fmt.Errorf("value of type %T", v)
}

func listJSON(dst []byte, xs []bj.Value) ([]byte, error) {
	dst = append(dst, '[')
	for i, x := range xs {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = contextJSON(dst, x); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}
