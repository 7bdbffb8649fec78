package stix

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"unicode/utf8"
	"unsafe"
)

// The decoders walk the top level of a message with this small scanner
// instead of encoding/json so that routing costs one pass without
// allocations, duplicate properties can be refused (encoding/json silently
// keeps the last one, which would let "type" say one thing to Peek and another
// to a decoder), and every value we do not understand is only checked for
// well-formedness, never touched.

// maxJSONDepth matches encoding/json so that both accept the same documents.
const maxJSONDepth = 10000

// strSpecial marks bytes that end the fast path inside a JSON string.
var strSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'] = true
	t['\\'] = true
	return t
}()

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	// b[i] > ' ' ends the loop with one comparison in the common case.
	for i < len(b) && b[i] <= ' ' && isWS(b[i]) {
		i++
	}
	return i
}

func synErr(off int, msg string) error { return &syntaxError{off: off, msg: msg} }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// swarStop has the high bit set in each byte of x that may end the fast
// path inside a string ('"', '\\' or a control character); zero means none
// of the eight bytes does. Borrows only propagate upwards from a real hit,
// so there are no false negatives and the lowest flagged byte is a real hit.
func swarStop(x uint64) uint64 {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	q := x ^ (lsb * '"')
	bs := x ^ (lsb * '\\')
	return ((q-lsb)&^q | (bs-lsb)&^bs | (x-lsb*0x20)&^x) & msb
}

// scanString expects b[i] == '"' and returns the index after the closing
// quote and whether the string contains escapes. Strings are most of a STIX
// message, so the common bytes are skipped eight at a time. With checkUTF8
// the contents must also be valid UTF-8.
func scanString(b []byte, i int, checkUTF8 bool) (end int, escaped bool, err error) {
	j := i + 1
	// hi collects the bytes looked at, so that its high bits say whether
	// the string may hold non-ASCII bytes: only then is the UTF-8 check
	// worth a second look. Words read past the closing quote can only make
	// it say so needlessly, never miss a byte of the string.
	var hi uint64
	for {
		for j+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[j:])
			hi |= x
			if m := swarStop(x); m != 0 {
				// The lowest flagged byte is always a real hit.
				j += bits.TrailingZeros64(m) >> 3
				goto special
			}
			j += 8
		}
		for j < len(b) && !strSpecial[b[j]] {
			hi |= uint64(b[j])
			j++
		}
		if j >= len(b) {
			return j, escaped, synErr(i, "unterminated string")
		}
	special:
		switch c := b[j]; {
		case c == '"':
			if checkUTF8 && hi&0x8080808080808080 != 0 && !utf8.Valid(b[i+1:j]) {
				return j, escaped, synErr(i, "string is not valid UTF-8")
			}
			return j + 1, escaped, nil
		case c == '\\':
			escaped = true
			if j+1 >= len(b) {
				return j, escaped, synErr(j, "unterminated escape")
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(b) || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) || !isHex(b[j+5]) {
					return j, escaped, synErr(j, `invalid \u escape`)
				}
				j += 6
			default:
				return j, escaped, synErr(j, "invalid escape")
			}
		default:
			return j, escaped, synErr(j, "control character in string")
		}
	}
}

func scanNumber(b []byte, i int) (int, error) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && '1' <= b[j] && b[j] <= '9':
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
	default:
		return j, synErr(j, "invalid number")
	}
	if j < len(b) && b[j] == '.' {
		j++
		k := j
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
		if j == k {
			return j, synErr(j, "invalid number: no digits after '.'")
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := j
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
		if j == k {
			return j, synErr(j, "invalid number: no digits in exponent")
		}
	}
	return j, nil
}

func scanLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, synErr(i, "invalid literal")
	}
	return i + len(lit), nil
}

// skipValue checks the JSON value starting at b[i] (after whitespace) and
// returns the index after it. outer is the number of enclosing containers,
// counted towards maxJSONDepth. It is iterative, with a bit stack for the
// container kinds, so hostile nesting costs memory proportional to depth/64
// and never the goroutine stack.
func skipValue(b []byte, i int, outer int, checkUTF8 bool) (int, error) {
	var (
		small uint64   // container kinds of the first 64 levels; 1 = object
		big   []uint64 // further levels, rarely used
		depth int
		err   error
	)
	for {
		// A value is expected at i.
		i = skipWS(b, i)
		if i >= len(b) {
			return i, synErr(i, "unexpected end of input")
		}
		c := b[i]
		switch {
		case c == '"':
			if i, _, err = scanString(b, i, checkUTF8); err != nil {
				return i, err
			}
		case c == '{' || c == '[':
			if outer+depth >= maxJSONDepth {
				return i, synErr(i, "nesting too deep")
			}
			j := skipWS(b, i+1)
			if j < len(b) && (c == '{' && b[j] == '}' || c == '[' && b[j] == ']') {
				i = j + 1
				break
			}
			i = j
			// Push the container kind.
			d := depth
			depth++
			if d >= 64 {
				d -= 64
				if d/64 >= len(big) {
					big = append(big, 0)
				}
				big[d/64] &^= 1 << uint(d%64)
				if c == '{' {
					big[d/64] |= 1 << uint(d%64)
				}
			} else {
				small &^= 1 << uint(d)
				if c == '{' {
					small |= 1 << uint(d)
				}
			}
			if c == '{' {
				if i, err = objectKey(b, i, checkUTF8); err != nil {
					return i, err
				}
			}
			continue
		case c == 't':
			if i, err = scanLiteral(b, i, "true"); err != nil {
				return i, err
			}
		case c == 'f':
			if i, err = scanLiteral(b, i, "false"); err != nil {
				return i, err
			}
		case c == 'n':
			if i, err = scanLiteral(b, i, "null"); err != nil {
				return i, err
			}
		case c == '-' || '0' <= c && c <= '9':
			if i, err = scanNumber(b, i); err != nil {
				return i, err
			}
		default:
			return i, synErr(i, "unexpected character")
		}
		// A value ended at i: close containers until one continues.
		for {
			if depth == 0 {
				return i, nil
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, synErr(i, "unexpected end of input")
			}
			var obj bool
			if d := depth - 1; d < 64 {
				obj = small&(1<<uint(d)) != 0
			} else {
				d -= 64
				obj = big[d/64]&(1<<uint(d%64)) != 0
			}
			c := b[i]
			if c == ',' {
				i++
				if obj {
					if i, err = objectKey(b, i, checkUTF8); err != nil {
						return i, err
					}
				}
				break
			}
			if obj && c == '}' || !obj && c == ']' {
				depth--
				i++
				continue
			}
			return i, synErr(i, "expected ',' or end of container")
		}
	}
}

// objectKey reads `"key" :` and returns the index of the value.
func objectKey(b []byte, i int, checkUTF8 bool) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '"' {
		return i, synErr(i, "expected object key")
	}
	i, _, err := scanString(b, i, checkUTF8)
	if err != nil {
		return i, err
	}
	i = skipWS(b, i)
	if i >= len(b) || b[i] != ':' {
		return i, synErr(i, "expected ':' after object key")
	}
	return i + 1, nil
}

// members iterates over the top-level properties of one JSON object.
type members struct {
	b    []byte
	i    int
	n    int
	done bool
	// utf8 requires every string, not only those decoded, to be valid
	// UTF-8. As bytes outside strings must be ASCII anyway, a well-formed
	// object then is valid UTF-8 as a whole.
	utf8 bool
}

func newMembers(b []byte) (members, error) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return members{}, synErr(i, "message is not a JSON object")
	}
	return members{b: b, i: i + 1}, nil
}

// next returns the raw key (without quotes, escapes not resolved) and the raw
// value. ok is false once the object is closed and only whitespace follows.
func (m *members) next() (key []byte, keyEscaped bool, val []byte, ok bool, err error) {
	if m.done {
		return nil, false, nil, false, nil
	}
	b := m.b
	i := skipWS(b, m.i)
	if i < len(b) && b[i] == '}' && m.n == 0 {
		return m.finish(i + 1)
	}
	if m.n > 0 {
		if i >= len(b) {
			return nil, false, nil, false, synErr(i, "unexpected end of input")
		}
		if b[i] == '}' {
			return m.finish(i + 1)
		}
		if b[i] != ',' {
			return nil, false, nil, false, synErr(i, "expected ',' or '}'")
		}
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		return nil, false, nil, false, synErr(i, "expected property name")
	}
	end, esc, err := scanString(b, i, m.utf8)
	if err != nil {
		return nil, false, nil, false, err
	}
	key = b[i+1 : end-1]
	i = skipWS(b, end)
	if i >= len(b) || b[i] != ':' {
		return nil, false, nil, false, synErr(i, "expected ':'")
	}
	i = skipWS(b, i+1)
	start := i
	// Most property values are strings; skip them without the container
	// machinery. The message object itself is the first nesting level.
	if i < len(b) && b[i] == '"' {
		i, _, err = scanString(b, i, m.utf8)
	} else {
		i, err = skipValue(b, i, 1, m.utf8)
	}
	if err != nil {
		return nil, false, nil, false, err
	}
	m.i = i
	m.n++
	return key, esc, b[start:i], true, nil
}

func (m *members) finish(i int) ([]byte, bool, []byte, bool, error) {
	m.done = true
	if j := skipWS(m.b, i); j != len(m.b) {
		return nil, false, nil, false, synErr(j, "data after the JSON object")
	}
	return nil, false, nil, false, nil
}

// unescapeKey resolves escapes in a property name so that "\u0074ype" is
// "type", as it is for every other JSON reader.
func unescapeKey(key []byte, escaped bool) []byte {
	if !escaped {
		return key
	}
	q := make([]byte, 0, len(key)+2)
	q = append(q, '"')
	q = append(q, key...)
	q = append(q, '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		// Unreachable: scanString already validated the escapes.
		return key
	}
	return []byte(s)
}

// decodeString turns a raw JSON string value (with quotes) into a Go string.
// Plain ASCII/UTF-8 without escapes is the common case and needs one copy.
func decodeString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// viewString is decodeString without the copy, for a string that is only
// looked at while raw is: the result aliases raw, so it must be kept
// neither beyond raw's lifetime nor past any change to raw. ok is false
// where decodeString would have to build a new string (escapes, invalid
// UTF-8) or fail. validUTF8 says that raw is known to be valid UTF-8.
func viewString(raw []byte, validUTF8 bool) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') >= 0 || !validUTF8 && !utf8.Valid(inner) {
		return "", false
	}
	return unsafe.String(unsafe.SliceData(inner), len(inner)), true
}

// jsonKind names the kind of a raw JSON value for error messages.
func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// appendString appends s as a JSON string. Unlike encoding/json it leaves
// <, > and & alone: patterns are full of them and nobody embeds these
// messages in HTML.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 break JavaScript consumers of JSON lines.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
