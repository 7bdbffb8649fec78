package brokerjson

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ErrData is wrapped by every error about well-formed JSON that is not a
// valid Broker message or value.
var ErrData = errors.New("brokerjson: invalid data")

// DataError is JSON that does not follow Broker's data model. Path locates
// the offending part, e.g. "data[2].data[0]".
type DataError struct {
	Path string
	Msg  string
}

func (e *DataError) Error() string {
	if e.Path == "" {
		return "brokerjson: " + e.Msg
	}
	return "brokerjson: " + e.Path + ": " + e.Msg
}

// Is makes errors.Is(err, ErrData) true.
func (e *DataError) Is(target error) bool { return target == ErrData }

func dataErr(format string, args ...any) *DataError {
	return &DataError{Msg: fmt.Sprintf(format, args...)}
}

// within prefixes the path of a DataError with seg as the error unwinds.
func within(err error, seg string) error {
	var de *DataError
	if errors.As(err, &de) {
		switch {
		case de.Path == "":
			de.Path = seg
		case strings.HasPrefix(de.Path, "["):
			de.Path = seg + de.Path
		default:
			de.Path = seg + "." + de.Path
		}
	}
	return err
}

// Message is what travels over the WebSocket after the handshake: a
// *DataMessage, an *Ack or an *ErrorMessage.
type Message interface{ messageType() string }

// DataMessage is a value published on a topic.
type DataMessage struct {
	Topic string
	Data  Value
}

// Ack is the server's answer to a successful handshake.
type Ack struct {
	Endpoint string
	Version  string
}

// ErrorMessage is an error the server reports, e.g. code
// "deserialization_failed" with context "failed to create Zeek event".
type ErrorMessage struct {
	Code    string
	Context string
}

func (*DataMessage) messageType() string  { return "data-message" }
func (*Ack) messageType() string          { return "ack" }
func (*ErrorMessage) messageType() string { return "error" }

// Decode decodes one message. The result is a *DataMessage, *Ack or
// *ErrorMessage; members other than those the type needs are ignored.
func Decode(b []byte) (Message, error) {
	n, err := parseJSON(b)
	if err != nil {
		return nil, err
	}
	if n.kind != kObject {
		return nil, dataErr("a message must be an object, got %s", n.kind)
	}
	typ, err := stringMember(&n, "type")
	if err != nil {
		return nil, err
	}
	switch typ {
	case "data-message":
		topic, err := stringMember(&n, "topic")
		if err != nil {
			return nil, err
		}
		v, err := toValue(&n)
		if err != nil {
			return nil, err
		}
		return &DataMessage{Topic: topic, Data: v}, nil
	case "ack":
		ep, err := stringMember(&n, "endpoint")
		if err != nil {
			return nil, err
		}
		ver, err := stringMember(&n, "version")
		if err != nil {
			return nil, err
		}
		return &Ack{Endpoint: ep, Version: ver}, nil
	case "error":
		code, err := stringMember(&n, "code")
		if err != nil {
			return nil, err
		}
		ctx, err := stringMember(&n, "context")
		if err != nil {
			return nil, err
		}
		return &ErrorMessage{Code: code, Context: ctx}, nil
	}
	return nil, within(dataErr("unknown message type %q (want data-message, ack or error)", typ), "type")
}

// DecodeValue decodes one value object ({"@data-type": …, "data": …}).
func DecodeValue(b []byte) (Value, error) {
	n, err := parseJSON(b)
	if err != nil {
		return nil, err
	}
	return toValue(&n)
}

// DecodeTopics decodes a handshake: a JSON array of topic prefixes.
func DecodeTopics(b []byte) ([]string, error) {
	n, err := parseJSON(b)
	if err != nil {
		return nil, err
	}
	if n.kind != kArray {
		return nil, dataErr("the handshake must be an array of topics, got %s", n.kind)
	}
	out := make([]string, len(n.elems))
	for i, e := range n.elems {
		if e.kind != kString {
			return nil, within(dataErr("a topic must be a string, got %s", e.kind), fmt.Sprintf("[%d]", i))
		}
		out[i] = e.s
	}
	return out, nil
}

func stringMember(n *node, key string) (string, error) {
	v := n.get(key)
	if v == nil {
		return "", dataErr("member %q is missing", key)
	}
	if v.kind != kString {
		return "", within(dataErr("must be a string, got %s", v.kind), key)
	}
	return v.s, nil
}

func toValue(n *node) (Value, error) {
	if n.kind != kObject {
		return nil, dataErr("a value must be an object, got %s", n.kind)
	}
	name, err := stringMember(n, "@data-type")
	if err != nil {
		return nil, err
	}
	t, ok := typeByName(name)
	if !ok {
		return nil, within(dataErr("unknown type %q", name), "@data-type")
	}
	d := n.get("data")
	if d == nil {
		return nil, dataErr("member \"data\" is missing")
	}
	v, err := dataOf(t, d)
	if err != nil {
		return nil, within(err, "data")
	}
	return v, nil
}

func want(t Type, k kind, d *node) error {
	if d.kind != k {
		return dataErr("%s data must be %s, got %s", t, k, d.kind)
	}
	return nil
}

func dataOf(t Type, d *node) (Value, error) {
	switch t {
	case TypeNone:
		return None{}, nil // Broker ignores the data of none; it writes {}
	case TypeBoolean:
		if err := want(t, kBool, d); err != nil {
			return nil, err
		}
		return Boolean(d.b), nil
	case TypeCount:
		if err := want(t, kNumber, d); err != nil {
			return nil, err
		}
		if !isUnsignedLiteral(d.s) {
			return nil, dataErr("count must be an unsigned integer, got %s", d.s)
		}
		u, err := strconv.ParseUint(d.s, 10, 64)
		if err != nil {
			return nil, dataErr("count %s does not fit 64 bits", d.s)
		}
		return Count(u), nil
	case TypeInteger:
		if err := want(t, kNumber, d); err != nil {
			return nil, err
		}
		if !isUnsignedLiteral(strings.TrimPrefix(d.s, "-")) {
			return nil, dataErr("integer must be an integer, got %s", d.s)
		}
		i, err := strconv.ParseInt(d.s, 10, 64)
		if err != nil {
			return nil, dataErr("integer %s does not fit 64 bits", d.s)
		}
		return Integer(i), nil
	case TypeReal:
		if err := want(t, kNumber, d); err != nil {
			return nil, err
		}
		return parseReal(d.s)
	case TypeTimespan:
		if err := want(t, kString, d); err != nil {
			return nil, err
		}
		ts, err := ParseTimespan(d.s)
		if err != nil {
			return nil, &DataError{Msg: err.Error()}
		}
		return ts, nil
	case TypeTimestamp:
		if err := want(t, kString, d); err != nil {
			return nil, err
		}
		ts, err := ParseTimestamp(d.s)
		if err != nil {
			return nil, &DataError{Msg: err.Error()}
		}
		return ts, nil
	case TypeString:
		if err := want(t, kString, d); err != nil {
			return nil, err
		}
		return String(d.s), nil
	case TypeEnumValue:
		if err := want(t, kString, d); err != nil {
			return nil, err
		}
		return EnumValue(d.s), nil
	case TypeAddress:
		if err := want(t, kString, d); err != nil {
			return nil, err
		}
		a, err := netip.ParseAddr(d.s)
		if err != nil || a.Zone() != "" {
			return nil, dataErr("%q is not an IP address", d.s)
		}
		return Address{a}, nil
	case TypeSubnet:
		if err := want(t, kString, d); err != nil {
			return nil, err
		}
		p, err := netip.ParsePrefix(d.s)
		if err != nil {
			return nil, dataErr("%q is not a subnet", d.s)
		}
		return Subnet{p}, nil
	case TypePort:
		if err := want(t, kString, d); err != nil {
			return nil, err
		}
		return ParsePort(d.s)
	case TypeVector, TypeSet:
		if err := want(t, kArray, d); err != nil {
			return nil, err
		}
		xs := make([]Value, len(d.elems))
		for i := range d.elems {
			v, err := toValue(&d.elems[i])
			if err != nil {
				return nil, within(err, fmt.Sprintf("[%d]", i))
			}
			xs[i] = v
		}
		if t == TypeSet {
			return Set(xs), nil
		}
		return Vector(xs), nil
	case TypeTable:
		if err := want(t, kArray, d); err != nil {
			return nil, err
		}
		tab := make(Table, len(d.elems))
		for i := range d.elems {
			e := &d.elems[i]
			seg := fmt.Sprintf("[%d]", i)
			if e.kind != kObject {
				return nil, within(dataErr("a table entry must be an object, got %s", e.kind), seg)
			}
			for _, part := range []string{"key", "value"} {
				pn := e.get(part)
				if pn == nil {
					return nil, within(dataErr("member %q is missing", part), seg)
				}
				v, err := toValue(pn)
				if err != nil {
					return nil, within(within(err, part), seg)
				}
				if part == "key" {
					tab[i].Key = v
				} else {
					tab[i].Value = v
				}
			}
		}
		return tab, nil
	}
	return nil, dataErr("unknown type %d", t)
}

func isUnsignedLiteral(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func parseReal(s string) (Value, error) {
	switch s {
	case "nan", "-nan": // Broker prints reals with %f
		return Real(math.NaN()), nil
	case "inf":
		return Real(math.Inf(1)), nil
	case "-inf":
		return Real(math.Inf(-1)), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil, dataErr("real %s: %v", s, err)
	}
	// Out of range is ±Inf or 0, as a C++ reader would make it.
	return Real(f), nil
}

// Timespan units, as Broker and CAF spell them.
var timespanUnits = []struct {
	suffix string
	d      time.Duration
}{
	{"ns", time.Nanosecond},
	{"us", time.Microsecond},
	{"ms", time.Millisecond},
	{"min", time.Minute},
	{"s", time.Second},
	{"h", time.Hour},
	{"d", 24 * time.Hour},
}

// ParseTimespan parses "<integer><unit>" with unit ns, us, ms, s, min, h or
// d. The integer may be negative (Broker writes negative intervals so).
func ParseTimespan(s string) (Timespan, error) {
	num := s
	var unit time.Duration
	for _, u := range timespanUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			num, unit = rest, u.d
			break
		}
	}
	if unit == 0 {
		return 0, fmt.Errorf("timespan %q: want an integer and a unit (ns, us, ms, s, min, h, d)", s)
	}
	neg := strings.HasPrefix(num, "-")
	digits := strings.TrimPrefix(num, "-")
	if !isUnsignedLiteral(digits) {
		return 0, fmt.Errorf("timespan %q: want an integer and a unit (ns, us, ms, s, min, h, d)", s)
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	limit := uint64(math.MaxInt64) / uint64(unit)
	if neg {
		limit = (uint64(math.MaxInt64) + 1) / uint64(unit)
	}
	if err != nil || n > limit {
		return 0, fmt.Errorf("timespan %q does not fit 64 bits of nanoseconds", s)
	}
	if neg {
		// -n*unit >= MinInt64 was checked above; compute in uint64 to
		// reach MinInt64 itself without overflow.
		return Timespan(-int64(n*uint64(unit)-1) - 1), nil
	}
	return Timespan(int64(n * uint64(unit))), nil
}

// ParseTimestamp parses Broker's timestamp form "YYYY-MM-DDThh:mm:ss" with
// an optional fraction of any length (digits past nanoseconds are
// dropped). It has no zone: the time is UTC.
func ParseTimestamp(s string) (Timestamp, error) {
	bad := func(why string) (Timestamp, error) {
		return Timestamp{}, fmt.Errorf("timestamp %q: %s", s, why)
	}
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return bad("want YYYY-MM-DDThh:mm:ss[.fraction]")
	}
	field := func(i, n int) (int, bool) {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := field(0, 4)
	month, ok2 := field(5, 2)
	day, ok3 := field(8, 2)
	hour, ok4 := field(11, 2)
	minute, ok5 := field(14, 2)
	sec, ok6 := field(17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return bad("want YYYY-MM-DDThh:mm:ss[.fraction]")
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return bad("no such date or time")
	}
	nsec := 0
	if rest := s[19:]; rest != "" {
		if rest[0] != '.' || len(rest) == 1 {
			return bad("want YYYY-MM-DDThh:mm:ss[.fraction]")
		}
		scale := 100000000
		for _, c := range []byte(rest[1:]) {
			if c < '0' || c > '9' {
				return bad("want YYYY-MM-DDThh:mm:ss[.fraction]")
			}
			nsec += int(c-'0') * scale
			scale /= 10
		}
	}
	return Timestamp{time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)}, nil
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// ParsePort parses "<number>/<protocol>" with protocol tcp, udp, icmp, or
// "?" (or nothing) for unknown.
func ParsePort(s string) (Port, error) {
	num, proto, ok := strings.Cut(s, "/")
	if !ok || !isUnsignedLiteral(num) {
		return Port{}, dataErr("port %q: want <number>/<protocol>", s)
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil {
		return Port{}, dataErr("port %q: number out of range", s)
	}
	p := Port{Number: uint16(n)}
	switch proto {
	case "tcp":
		p.Protocol = ProtocolTCP
	case "udp":
		p.Protocol = ProtocolUDP
	case "icmp":
		p.Protocol = ProtocolICMP
	case "?", "":
		p.Protocol = ProtocolUnknown
	default:
		return Port{}, dataErr("port %q: protocol must be tcp, udp, icmp or ?", s)
	}
	return p, nil
}
