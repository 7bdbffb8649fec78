package brokerjson

import (
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrSyntax is wrapped by every error about input that is not JSON (as
// Broker writes it).
var ErrSyntax = errors.New("brokerjson: malformed JSON")

// SyntaxError is malformed input at a byte offset.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("brokerjson: malformed JSON at byte %d: %s", e.Offset, e.Msg)
}

// Is makes errors.Is(err, ErrSyntax) true.
func (e *SyntaxError) Is(target error) bool { return target == ErrSyntax }

// MaxDepth bounds the nesting of arrays and objects in decoded input, so
// hostile input yields an error rather than exhausting the stack. Each
// Broker container takes two levels (its object and its array).
const MaxDepth = 512

// The JSON parser is hand-written rather than encoding/json because Broker's
// writer is not strict JSON: it leaves control characters other than
// \b \f \n \r \t raw inside strings, escapes vertical tab as "\v", and prints
// non-finite reals as nan, -nan, inf and -inf. All of that is accepted here.
// Invalid UTF-8 is replaced by U+FFFD (as encoding/json does), so decoded
// strings always encode again. It also keeps number literals as text, which
// is how counts and integers avoid float64.

type kind uint8

const (
	kNull kind = iota
	kBool
	kNumber
	kString
	kArray
	kObject
)

func (k kind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "an array", "an object"}[k]
}

type node struct {
	kind    kind
	b       bool
	s       string // string contents, or the literal of a number
	off     int
	elems   []node
	members []member
}

type member struct {
	key string
	val node
}

// get returns the member named key, or nil.
func (n *node) get(key string) *node {
	for i := range n.members {
		if n.members[i].key == key {
			return &n.members[i].val
		}
	}
	return nil
}

type parser struct {
	b     []byte
	i     int
	depth int
}

func parseJSON(b []byte) (node, error) {
	p := parser{b: b}
	p.skipWS()
	n, err := p.value()
	if err != nil {
		return node{}, err
	}
	p.skipWS()
	if p.i != len(p.b) {
		return node{}, p.errf("unexpected %q after the value", p.b[p.i])
	}
	return n, nil
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{Offset: p.i, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) skipWS() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) literal(word string) bool {
	if len(p.b)-p.i >= len(word) && string(p.b[p.i:p.i+len(word)]) == word {
		p.i += len(word)
		return true
	}
	return false
}

func (p *parser) value() (node, error) {
	if p.i >= len(p.b) {
		return node{}, p.errf("unexpected end of input")
	}
	off := p.i
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		return node{kind: kString, s: s, off: off}, err
	case c == 't' && p.literal("true"):
		return node{kind: kBool, b: true, off: off}, nil
	case c == 'f' && p.literal("false"):
		return node{kind: kBool, off: off}, nil
	case c == 'n' && p.literal("null"):
		return node{kind: kNull, off: off}, nil
	case c == 'n' && p.literal("nan"), c == 'i' && p.literal("inf"):
		return node{kind: kNumber, s: string(p.b[off:p.i]), off: off}, nil
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	}
	return node{}, p.errf("unexpected %q where a value should be", p.b[p.i])
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errf("nested deeper than %d", MaxDepth)
	}
	return nil
}

func (p *parser) object() (node, error) {
	n := node{kind: kObject, off: p.i}
	if err := p.enter(); err != nil {
		return node{}, err
	}
	p.i++ // {
	p.skipWS()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		p.depth--
		return n, nil
	}
	var seen map[string]bool // only for large objects; small ones are scanned
	for {
		p.skipWS()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			if p.i >= len(p.b) {
				return node{}, p.errf("unexpected end of input in an object")
			}
			return node{}, p.errf("unexpected %q where a member name should be", p.b[p.i])
		}
		keyOff := p.i
		key, err := p.str()
		if err != nil {
			return node{}, err
		}
		if len(n.members) >= 8 && seen == nil {
			seen = make(map[string]bool, 16)
			for _, m := range n.members {
				seen[m.key] = true
			}
		}
		dup := false
		if seen != nil {
			dup = seen[key]
			seen[key] = true
		} else {
			dup = n.get(key) != nil
		}
		if dup {
			// A reader that keeps the first and one that keeps the last
			// would disagree about the message.
			return node{}, &SyntaxError{Offset: keyOff, Msg: fmt.Sprintf("member %q appears more than once", key)}
		}
		p.skipWS()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return node{}, p.errf("missing ':' after member name")
		}
		p.i++
		p.skipWS()
		v, err := p.value()
		if err != nil {
			return node{}, err
		}
		n.members = append(n.members, member{key: key, val: v})
		p.skipWS()
		if p.i >= len(p.b) {
			return node{}, p.errf("unexpected end of input in an object")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			p.depth--
			return n, nil
		default:
			return node{}, p.errf("unexpected %q in an object", p.b[p.i])
		}
	}
}

func (p *parser) array() (node, error) {
	n := node{kind: kArray, off: p.i}
	if err := p.enter(); err != nil {
		return node{}, err
	}
	p.i++ // [
	p.skipWS()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		p.depth--
		n.elems = []node{}
		return n, nil
	}
	for {
		p.skipWS()
		v, err := p.value()
		if err != nil {
			return node{}, err
		}
		n.elems = append(n.elems, v)
		p.skipWS()
		if p.i >= len(p.b) {
			return node{}, p.errf("unexpected end of input in an array")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			p.depth--
			return n, nil
		default:
			return node{}, p.errf("unexpected %q in an array", p.b[p.i])
		}
	}
}

// number reads a JSON number, or -nan / -inf, and keeps its text.
func (p *parser) number() (node, error) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
		if p.literal("nan") || p.literal("inf") {
			return node{kind: kNumber, s: string(p.b[start:p.i]), off: start}, nil
		}
	}
	digits := func() int {
		n := 0
		for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case digits() == 0:
		return node{}, p.errf("malformed number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return node{}, p.errf("malformed number: no digits after '.'")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return node{}, p.errf("malformed number: no digits in the exponent")
		}
	}
	return node{kind: kNumber, s: string(p.b[start:p.i]), off: start}, nil
}

// str reads a string; p.b[p.i] is its opening quote.
func (p *parser) str() (string, error) {
	p.i++
	start := p.i
	// Fast path: plain ASCII without escapes is the common case.
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := string(p.b[start:p.i])
			p.i++
			return s, nil
		}
		if c == '\\' || c >= utf8.RuneSelf {
			break
		}
		p.i++
	}
	buf := make([]byte, 0, p.i-start+16)
	buf = append(buf, p.b[start:p.i]...)
	for {
		if p.i >= len(p.b) {
			return "", p.errf("unterminated string")
		}
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(buf), nil
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return "", p.errf("unterminated string")
			}
			e := p.b[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'v': // Broker's writer escapes vertical tab like C does
				buf = append(buf, '\v')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", p.errf("malformed \\u escape")
				}
				if utf16.IsSurrogate(r) {
					r2 := utf8.RuneError
					save := p.i
					if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
						p.i += 2
						if lo, ok := p.hex4(); ok {
							r2 = utf16.DecodeRune(r, lo)
						}
						if r2 == utf8.RuneError {
							p.i = save // a lone surrogate; the next escape stands alone
						}
					}
					r = r2
				}
				buf = utf8.AppendRune(buf, r)
			default:
				p.i--
				return "", p.errf("invalid escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			// Raw control characters are not JSON, but Broker writes them.
			buf = append(buf, c)
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size == 1 {
				buf = append(buf, "\uFFFD"...)
			} else {
				buf = append(buf, p.b[p.i:p.i+size]...)
			}
			p.i += size
		}
	}
}

func (p *parser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}
