package zeektest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

// Script is what a fake Zeek takes from a Zeek script: its record types,
// the signatures of its events and the values of its options and
// constants. It reads the declarations Zeek would use to turn incoming
// WebSocket events into Zeek events, so that the fake refuses exactly what
// the real script's declarations refuse.
type Script struct {
	Module  string
	Records map[string][]Field // by qualified name
	Events  map[string][]Field // parameters, by qualified event name
	// Values are the initial values of options and constants, as written.
	Values map[string]string // by qualified name
}

// Field is a record field or an event parameter.
type Field struct {
	Name     string
	Type     *ZType
	Optional bool // &optional or &default: may be missing or none
}

// ZType is a Zeek type.
type ZType struct {
	// Kind is a basic type (bool, count, int, double, time, interval,
	// string, addr, subnet, port, any), or table, set, vector, record or
	// enum.
	Kind  string
	Name  string   // of a record or enum
	Index []*ZType // of a table or set
	Yield *ZType   // of a table, the element type of a vector
}

func (t *ZType) String() string {
	switch t.Kind {
	case "table":
		return fmt.Sprintf("table[%s] of %s", typeList(t.Index), t.Yield)
	case "set":
		return fmt.Sprintf("set[%s]", typeList(t.Index))
	case "vector":
		return "vector of " + t.Yield.String()
	case "record", "enum":
		return t.Name
	}
	return t.Kind
}

func typeList(ts []*ZType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, ", ")
}

var basicTypes = map[string]bool{
	"bool": true, "count": true, "int": true, "double": true, "time": true, "interval": true,
	"string": true, "addr": true, "subnet": true, "port": true, "any": true,
}

// ParseScript reads the declarations of a Zeek script. It understands the
// subset of the language that declarations use: module, type … record,
// global … event(…), option and const; everything else is skipped.
func ParseScript(src string) (*Script, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	s := &Script{Module: "GLOBAL", Records: map[string][]Field{}, Events: map[string][]Field{}, Values: map[string]string{}}
	p := &scriptParser{toks: toks, s: s}
	for p.i < len(p.toks) {
		switch p.peek() {
		case "module":
			p.i++
			s.Module = p.next()
			if err := p.expect(";"); err != nil {
				return nil, err
			}
		case "type":
			p.i++
			name := p.qualify(p.next())
			if err := p.expect(":"); err != nil {
				return nil, err
			}
			if p.peek() != "record" {
				p.skipStatement()
				continue
			}
			p.i++
			fields, err := p.fields("{", "}", ";")
			if err != nil {
				return nil, fmt.Errorf("record %s: %w", name, err)
			}
			s.Records[name] = fields
			p.skipStatement()
		case "global", "option", "const":
			p.i++
			name := p.qualify(p.next())
			if p.peek() == ":" {
				p.i++
				if p.peek() == "event" {
					p.i++
					params, err := p.fields("(", ")", ",")
					if err != nil {
						return nil, fmt.Errorf("event %s: %w", name, err)
					}
					s.Events[name] = params
					p.skipStatement()
					continue
				}
				if _, err := p.typ(); err != nil {
					p.skipStatement()
					continue
				}
			}
			if p.peek() == "=" {
				p.i++
				var val []string
				for p.i < len(p.toks) && p.peek() != ";" && !strings.HasPrefix(p.peek(), "&") {
					val = append(val, p.next())
				}
				s.Values[name] = strings.Join(val, " ")
			}
			p.skipStatement()
		default:
			p.i++
		}
	}
	// Resolve record and enum names now that every record is known.
	var resolve func(t *ZType) error
	resolve = func(t *ZType) error {
		if t == nil {
			return nil
		}
		if t.Kind == "name" {
			switch {
			case s.Records[t.Name] != nil:
				t.Kind = "record"
			case s.Records[s.Module+"::"+t.Name] != nil:
				t.Kind, t.Name = "record", s.Module+"::"+t.Name
			default:
				t.Kind = "enum" // e.g. Intel::Type: an enum-value on the wire
			}
		}
		for _, x := range t.Index {
			if err := resolve(x); err != nil {
				return err
			}
		}
		return resolve(t.Yield)
	}
	for _, fs := range s.Records {
		for _, f := range fs {
			if err := resolve(f.Type); err != nil {
				return nil, err
			}
		}
	}
	for _, ps := range s.Events {
		for _, f := range ps {
			if err := resolve(f.Type); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// String returns a string option's or constant's value.
func (s *Script) String(name string) (string, error) {
	v, ok := s.Values[name]
	if !ok {
		return "", fmt.Errorf("the script declares no %s", name)
	}
	u, err := strconv.Unquote(v)
	if err != nil {
		return "", fmt.Errorf("%s = %s is not a string", name, v)
	}
	return u, nil
}

// Interval returns an interval option's value ("30 days", "10 sec").
func (s *Script) Interval(name string) (time.Duration, error) {
	v, ok := s.Values[name]
	if !ok {
		return 0, fmt.Errorf("the script declares no %s", name)
	}
	num, unit, ok := strings.Cut(v, " ")
	n, err := strconv.ParseFloat(num, 64)
	units := map[string]time.Duration{
		"usec": time.Microsecond, "usecs": time.Microsecond, "msec": time.Millisecond, "msecs": time.Millisecond,
		"sec": time.Second, "secs": time.Second, "min": time.Minute, "mins": time.Minute,
		"hr": time.Hour, "hrs": time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	}
	d, known := units[unit]
	if !ok || err != nil || !known {
		return 0, fmt.Errorf("%s = %s is not an interval", name, v)
	}
	return time.Duration(n * float64(d)), nil
}

// Int returns a count option's value.
func (s *Script) Int(name string) (int, error) {
	v, ok := s.Values[name]
	if !ok {
		return 0, fmt.Errorf("the script declares no %s", name)
	}
	return strconv.Atoi(v)
}

// CheckEvent does what Zeek does before raising an event that arrived over
// WebSocket: the event must be declared, and its arguments must convert to
// the declared parameter types. Metadata must be well-formed (a network
// timestamp is a time).
func (s *Script) CheckEvent(e bj.Event) error {
	params, ok := s.Events[e.Name]
	if !ok {
		return fmt.Errorf("no event %s is declared", e.Name)
	}
	if len(e.Args) != len(params) {
		return fmt.Errorf("%s takes %d arguments, got %d", e.Name, len(params), len(e.Args))
	}
	for i, p := range params {
		if err := s.check(p.Type, e.Args[i]); err != nil {
			return fmt.Errorf("%s: argument %s: %w", e.Name, p.Name, err)
		}
	}
	for _, m := range e.Metadata {
		if m.ID != bj.MetadataNetworkTimestamp {
			return fmt.Errorf("%s: unknown metadata %d", e.Name, m.ID)
		}
		if _, ok := m.Value.(bj.Timestamp); !ok {
			return fmt.Errorf("%s: network timestamp metadata is a %s", e.Name, m.Value.Type())
		}
	}
	return nil
}

var basicWire = map[string]bj.Type{
	"bool": bj.TypeBoolean, "count": bj.TypeCount, "int": bj.TypeInteger, "double": bj.TypeReal,
	"time": bj.TypeTimestamp, "interval": bj.TypeTimespan, "string": bj.TypeString,
	"addr": bj.TypeAddress, "subnet": bj.TypeSubnet, "port": bj.TypePort, "enum": bj.TypeEnumValue,
}

func (s *Script) check(t *ZType, v bj.Value) error {
	if v == nil {
		return fmt.Errorf("missing value")
	}
	if t.Kind == "any" {
		return nil
	}
	if wt, ok := basicWire[t.Kind]; ok {
		if v.Type() != wt {
			return fmt.Errorf("want %s (%s), got %s", t, wt, v.Type())
		}
		return nil
	}
	switch t.Kind {
	case "record":
		vec, ok := v.(bj.Vector)
		if !ok {
			return fmt.Errorf("want record %s (a vector), got %s", t.Name, v.Type())
		}
		fields := s.Records[t.Name]
		if len(vec) > len(fields) {
			return fmt.Errorf("record %s has %d fields, got %d", t.Name, len(fields), len(vec))
		}
		for i, f := range fields {
			if i >= len(vec) {
				if !f.Optional {
					return fmt.Errorf("record %s: field %s is missing", t.Name, f.Name)
				}
				continue
			}
			if _, none := vec[i].(bj.None); none && f.Optional {
				continue
			}
			if err := s.check(f.Type, vec[i]); err != nil {
				return fmt.Errorf("record %s: field %s: %w", t.Name, f.Name, err)
			}
		}
		return nil
	case "vector":
		vec, ok := v.(bj.Vector)
		if !ok {
			return fmt.Errorf("want %s, got %s", t, v.Type())
		}
		for i, x := range vec {
			if err := s.check(t.Yield, x); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		return nil
	case "set":
		set, ok := v.(bj.Set)
		if !ok {
			return fmt.Errorf("want %s, got %s", t, v.Type())
		}
		for i, x := range set {
			if err := s.checkIndex(t.Index, x); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		return nil
	case "table":
		tab, ok := v.(bj.Table)
		if !ok {
			return fmt.Errorf("want %s, got %s", t, v.Type())
		}
		for i, e := range tab {
			if err := s.checkIndex(t.Index, e.Key); err != nil {
				return fmt.Errorf("key %d: %w", i, err)
			}
			if err := s.check(t.Yield, e.Value); err != nil {
				return fmt.Errorf("value %d: %w", i, err)
			}
		}
		return nil
	}
	return fmt.Errorf("cannot check type %s", t)
}

// checkIndex checks a table key or set element: a composite index travels
// as a vector.
func (s *Script) checkIndex(index []*ZType, v bj.Value) error {
	if len(index) == 1 {
		return s.check(index[0], v)
	}
	vec, ok := v.(bj.Vector)
	if !ok || len(vec) != len(index) {
		return fmt.Errorf("want an index of %d values", len(index))
	}
	for i, t := range index {
		if err := s.check(t, vec[i]); err != nil {
			return err
		}
	}
	return nil
}

type scriptParser struct {
	toks []string
	i    int
	s    *Script
}

func (p *scriptParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *scriptParser) next() string {
	t := p.peek()
	p.i++
	return t
}

func (p *scriptParser) expect(tok string) error {
	if got := p.next(); got != tok {
		return fmt.Errorf("want %q, got %q", tok, got)
	}
	return nil
}

func (p *scriptParser) qualify(name string) string {
	if strings.Contains(name, "::") || p.s.Module == "GLOBAL" {
		return name
	}
	return p.s.Module + "::" + name
}

// skipStatement skips to the end of the statement: the next ';' outside
// brackets.
func (p *scriptParser) skipStatement() {
	depth := 0
	for p.i < len(p.toks) {
		switch p.next() {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			depth--
		case ";":
			if depth <= 0 {
				return
			}
		}
	}
}

// fields reads "open name: type attrs sep … close".
func (p *scriptParser) fields(open, close, sep string) ([]Field, error) {
	if err := p.expect(open); err != nil {
		return nil, err
	}
	var out []Field
	for p.peek() != close {
		if p.i >= len(p.toks) {
			return nil, fmt.Errorf("missing %q", close)
		}
		name := p.next()
		if err := p.expect(":"); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		t, err := p.typ()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		f := Field{Name: name, Type: t}
		// Attributes, up to the separator or the end.
		depth := 0
		for p.i < len(p.toks) {
			tok := p.peek()
			if depth == 0 && (tok == sep || tok == close) {
				break
			}
			switch tok {
			case "&optional", "&default":
				f.Optional = true
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				depth--
			}
			p.i++
		}
		out = append(out, f)
		if p.peek() == sep {
			p.i++
		}
	}
	p.i++ // close
	return out, nil
}

func (p *scriptParser) typ() (*ZType, error) {
	tok := p.next()
	switch {
	case tok == "table" || tok == "set":
		if err := p.expect("["); err != nil {
			return nil, err
		}
		t := &ZType{Kind: tok}
		for {
			x, err := p.typ()
			if err != nil {
				return nil, err
			}
			t.Index = append(t.Index, x)
			if p.peek() != "," {
				break
			}
			p.i++
		}
		if err := p.expect("]"); err != nil {
			return nil, err
		}
		if tok == "table" {
			if err := p.expect("of"); err != nil {
				return nil, err
			}
			y, err := p.typ()
			if err != nil {
				return nil, err
			}
			t.Yield = y
		}
		return t, nil
	case tok == "vector":
		if err := p.expect("of"); err != nil {
			return nil, err
		}
		y, err := p.typ()
		if err != nil {
			return nil, err
		}
		return &ZType{Kind: "vector", Yield: y}, nil
	case tok == "string_vec":
		return &ZType{Kind: "vector", Yield: &ZType{Kind: "string"}}, nil
	case basicTypes[tok]:
		return &ZType{Kind: tok}, nil
	case tok != "" && isIdent(tok):
		return &ZType{Kind: "name", Name: tok}, nil
	}
	return nil, fmt.Errorf("not a type: %q", tok)
}

func isIdent(s string) bool {
	for _, r := range s {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == ':') {
			return false
		}
	}
	return true
}

// tokenize splits Zeek source into identifiers (with ::), attributes
// (&name), string literals (quoted), numbers and punctuation; comments are
// dropped.
func tokenize(src string) ([]string, error) {
	var out []string
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated string at byte %d", i)
			}
			out = append(out, src[i:j+1])
			i = j + 1
		case c == '&' && i+1 < len(src) && isWordByte(src[i+1]):
			j := i + 1
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			out = append(out, src[i:j])
			i = j
		case isWordByte(c):
			j := i
			for j < len(src) && (isWordByte(src[j]) || src[j] == '.' || src[j] == ':' && j+1 < len(src) && src[j+1] == ':' ||
				src[j] == ':' && j > 0 && src[j-1] == ':') {
				j++
			}
			out = append(out, src[i:j])
			i = j
		default:
			out = append(out, src[i:i+1])
			i++
		}
	}
	return out, nil
}

func isWordByte(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
