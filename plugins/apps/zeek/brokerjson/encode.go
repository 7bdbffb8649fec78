package brokerjson

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// ErrUnencodable is wrapped by the errors of values that the format cannot
// carry: non-finite reals, timestamps outside the years 0000–9999, invalid
// addresses, nil values.
var ErrUnencodable = errors.New("brokerjson: value cannot be encoded")

func unencodable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnencodable, fmt.Sprintf(format, args...))
}

// Encode encodes a message the way Broker writes it: data messages as
// {"type":"data-message","topic":…,"@data-type":…,"data":…}, acks as
// {"type":"ack","endpoint":…,"version":…} and errors as
// {"type":"error","code":…,"context":…}.
func Encode(m Message) ([]byte, error) {
	switch m := m.(type) {
	case *DataMessage:
		return EncodeData(m.Topic, m.Data)
	case *Ack:
		b := []byte(`{"type":"ack","endpoint":`)
		b = AppendString(b, m.Endpoint)
		b = append(b, `,"version":`...)
		b = AppendString(b, m.Version)
		return append(b, '}'), nil
	case *ErrorMessage:
		b := []byte(`{"type":"error","code":`)
		b = AppendString(b, m.Code)
		b = append(b, `,"context":`...)
		b = AppendString(b, m.Context)
		return append(b, '}'), nil
	}
	return nil, unencodable("message %T", m)
}

// EncodeData encodes a data message: v published on topic.
func EncodeData(topic string, v Value) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, `{"type":"data-message","topic":`...)
	b = AppendString(b, topic)
	b = append(b, ',')
	b, err := appendEmbedded(b, v)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// EncodeTopics encodes a handshake: the JSON array of topic prefixes.
func EncodeTopics(topics []string) []byte {
	b := []byte{'['}
	for i, t := range topics {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, t)
	}
	return append(b, ']')
}

// AppendValue appends v as a value object.
func AppendValue(dst []byte, v Value) ([]byte, error) {
	dst = append(dst, '{')
	dst, err := appendEmbedded(dst, v)
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// appendEmbedded appends "@data-type":…,"data":… without braces.
func appendEmbedded(b []byte, v Value) ([]byte, error) {
	if v == nil {
		return nil, unencodable("nil value")
	}
	b = append(b, `"@data-type":"`...)
	b = append(b, v.Type().String()...)
	b = append(b, `","data":`...)
	var err error
	switch x := v.(type) {
	case None:
		b = append(b, "{}"...)
	case Boolean:
		b = strconv.AppendBool(b, bool(x))
	case Count:
		b = strconv.AppendUint(b, uint64(x), 10)
	case Integer:
		b = strconv.AppendInt(b, int64(x), 10)
	case Real:
		b, err = appendReal(b, float64(x))
	case Timespan:
		b = append(b, '"')
		b = AppendTimespan(b, x)
		b = append(b, '"')
	case Timestamp:
		b, err = appendTimestamp(b, x)
	case String:
		b = AppendString(b, string(x))
	case EnumValue:
		b = AppendString(b, string(x))
	case Address:
		if !x.IsValid() || x.Zone() != "" {
			return nil, unencodable("address %v", x.Addr)
		}
		b = append(b, '"')
		b = x.AppendTo(b)
		b = append(b, '"')
	case Subnet:
		if !x.IsValid() {
			return nil, unencodable("subnet %v", x.Prefix)
		}
		b = append(b, '"')
		b = x.AppendTo(b)
		b = append(b, '"')
	case Port:
		b = append(b, '"')
		b = strconv.AppendUint(b, uint64(x.Number), 10)
		b = append(b, '/')
		b = append(b, x.Protocol.String()...)
		b = append(b, '"')
	case Vector:
		b, err = appendList(b, x)
	case Set:
		b, err = appendList(b, x)
	case Table:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"key":`...)
			if b, err = AppendValue(b, e.Key); err != nil {
				return nil, err
			}
			b = append(b, `,"value":`...)
			if b, err = AppendValue(b, e.Value); err != nil {
				return nil, err
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	default:
		return nil, unencodable("value of type %T", v)
	}
	return b, err
}

func appendList(b []byte, xs []Value) ([]byte, error) {
	b = append(b, '[')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = AppendValue(b, x); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// appendReal writes f so that it reads back as the same float64 and so that
// Broker's reader sees a real: it needs a '.' or an exponent, or it takes
// the number for an integer and refuses it.
func appendReal(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, unencodable("real %v: JSON has no non-finite numbers", f)
	}
	start := len(b)
	abs := math.Abs(f)
	fmtByte := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmtByte = 'e'
	}
	b = strconv.AppendFloat(b, f, fmtByte, -1, 64)
	for _, c := range b[start:] {
		if c == '.' || c == 'e' {
			return b, nil
		}
	}
	return append(b, ".0"...), nil
}

// AppendTimespan writes d as Broker does: "0s" for zero, otherwise in the
// coarsest of ns, us, ms and s that loses nothing ("15ms", "2592000s").
func AppendTimespan(b []byte, d Timespan) []byte {
	v := int64(d)
	if v == 0 {
		return append(b, "0s"...)
	}
	for _, unit := range []string{"ns", "us", "ms"} {
		if v%1000 != 0 {
			b = strconv.AppendInt(b, v, 10)
			return append(b, unit...)
		}
		v /= 1000
	}
	b = strconv.AppendInt(b, v, 10)
	return append(b, 's')
}

// timestampLayout is Broker's: ISO 8601 without zone, milliseconds.
const timestampLayout = "2006-01-02T15:04:05.000"

func appendTimestamp(b []byte, t Timestamp) ([]byte, error) {
	u := t.UTC()
	if y := u.Year(); y < 0 || y > 9999 {
		return nil, unencodable("timestamp %v: year %d has no four-digit form", t.Time, y)
	}
	b = append(b, '"')
	b = u.AppendFormat(b, timestampLayout)
	return append(b, '"'), nil
}

// FormatTimestamp returns t in Broker's form, e.g. "2021-03-01T12:00:05.123".
func FormatTimestamp(t time.Time) string { return t.UTC().Format(timestampLayout) }

// AppendString appends s as a JSON string. Quote, backslash and \b \f \n \r
// \t get their short escapes, other control characters \u00XX, and invalid
// UTF-8 becomes U+FFFD, so the result is always strict JSON. (Broker's
// reader does not know \u escapes: a string with such control characters
// is strict JSON that Zeek refuses, so callers that care refuse those
// strings first.)
func AppendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, "\uFFFD"...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// BrokerSafe reports whether Broker's reader takes s as AppendString writes
// it: it has no control characters other than \b \f \n \r \t (those need
// \u escapes, which Broker's reader lacks) and is valid UTF-8.
func BrokerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\b' && c != '\f' && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return utf8.ValidString(s)
}
