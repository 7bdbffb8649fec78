package stix

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestTimestampCalendar pins the two flavours: object timestamps must name a
// real day, pattern literals are bounded per field as the OASIS grammar (and
// valid-more.txt, which holds 2024-02-30) has it.
func TestTimestampCalendar(t *testing.T) {
	for _, s := range []string{"2024-02-30T12:00:00Z", "2023-02-29T12:00:00Z", "2024-04-31T12:00:00Z"} {
		if _, err := ParseTimestamp(s); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("ParseTimestamp(%q) = %v, want a calendar error", s, err)
		}
		mustParse(t, "[x:created = t'"+s+"']")
	}
	if _, err := ParseTimestamp("2024-02-29T12:00:00Z"); err != nil {
		t.Errorf("leap day rejected: %v", err)
	}
}

func TestPatternTestdataValid(t *testing.T) {
	for _, file := range patternFiles(t, "valid-") {
		for i, line := range patternLines(t, file) {
			t.Run(fmt.Sprintf("%s:%d", file, i+1), func(t *testing.T) {
				p := mustParse(t, line)
				checkRoundTrip(t, p)
			})
		}
	}
}

func TestPatternTestdataInvalid(t *testing.T) {
	for _, file := range patternFiles(t, "invalid-") {
		for i, line := range patternLines(t, file) {
			t.Run(fmt.Sprintf("%s:%d", file, i+1), func(t *testing.T) {
				p, err := parseChecked(t, line)
				if err == nil {
					t.Fatalf("Parse(%q) accepted an invalid pattern: %s", line, p)
				}
				var pe *PatternError
				if !errors.As(err, &pe) || pe.Column < 1 || pe.Column > len(line)+1 {
					t.Fatalf("Parse(%q): error %v has no usable column", line, err)
				}
			})
		}
	}
}

// checkRoundTrip: the normal form parses back to itself.
func checkRoundTrip(t *testing.T, p *Pattern) {
	t.Helper()
	s := p.String()
	q, err := Parse(s)
	if err != nil {
		t.Fatalf("normal form %q does not parse: %v", s, err)
	}
	if q.String() != s {
		t.Fatalf("round trip changed the pattern:\n%s\n%s", s, q.String())
	}
}

func TestParseErrorColumns(t *testing.T) {
	tests := []struct {
		in   string
		col  int
		want string
	}{
		{"file:size = 1280", 1, "expected '[' or '('"},
		{"[file:size = ]", 14, "expected a literal"},
		{"[file.size = 1280]", 6, "expected ':'"},
		{"[file:size = 1280", 18, "expected ']'"},
		{"[file:size = 1280] WITHIN 5 HOURS", 29, "expected SECONDS"},
		{"[file:size = 1280] WITHIN -5 SECONDS", 27, "positive number"},
		{"[file:size = 1280] REPEATS 1.5 TIMES", 28, "positive integer"},
		{"[file:name = 'a\\nb']", 16, "invalid escape"},
		{"[file:name = 'abc]", 14, "unterminated string"},
		{"[file:name = 'x'] within 2 seconds", 19, "unexpected \"within\""},
		{"[file:first-name = 'x']", 7, "expected a property name"},
		{"[file:size = 007]", 15, "expected ']'"},
		{"[file:size < true]", 14, "cannot be ordered"},
		{"[file:size NOT EXISTS]", 16, "expected a comparison operator"},
		{"[x:a = h'abc']", 8, "odd number"},
		{"[x:a = h'zz']", 10, "not a hex digit"},
		{"[x:a = b'abc']", 8, "base64"},
		{"[x:a = t'2024-01-15T12:30:45+01:00']", 8, "end in Z"},
		{"[x:a = 1] /* open", 11, "unterminated /* comment"},
		{"[x:a = 'é'] AND [é:a = 1]", 18, "invalid character 'é'"},
		{"[x:a = 1] FOLLOWEDBY", 21, "end of pattern"},
		{"[x:a = 1] AND", 14, "end of pattern"},
		{"[x:a = 1]]", 10, "after the end"},
		{"[]", 2, "expected an object type"},
		{"", 1, "expected '[' or '('"},
		{"[x:a IN ('a' 'b')]", 14, "',' or ')'"},
		{"[x:a IN 'a']", 9, "'(' to start the IN set"},
		{"[x:a[x] = 1]", 6, "expected an index"},
		{"[x:a LAST 'x']", 6, "expected a comparison operator"},
		{"[x:a = 1] REPEATS 99999999999999999999 TIMES", 19, "out of range"},
		{"[file:hashes.MD5 = 'zz']", 18, "not a valid MD5 hash"},
		{"[file:hashes.sha256 IN ('f00')]", 21, "not a valid SHA-256 hash"},
	}
	for _, tc := range tests {
		_, err := parseChecked(t, tc.in)
		var pe *PatternError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %v, want a *PatternError", tc.in, err)
			continue
		}
		if pe.Column != tc.col || !strings.Contains(pe.Msg, tc.want) {
			t.Errorf("Parse(%q) = column %d %q, want column %d containing %q", tc.in, pe.Column, pe.Msg, tc.col, tc.want)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("column %d", tc.col)) {
			t.Errorf("error text %q does not name the column", err)
		}
	}
}

// shape renders the tree with explicit structure, to test precedence
// independently of String's parenthesisation.
func shape(e any) string {
	switch e := e.(type) {
	case *ObservationOp:
		parts := make([]string, len(e.Operands))
		for i, o := range e.Operands {
			parts[i] = shape(o)
		}
		return e.Op.String() + "(" + strings.Join(parts, ",") + ")"
	case *Observation:
		s := "[" + shape(e.Expr) + "]"
		for _, q := range e.Qualifiers {
			s += "{" + qualifierName(q.Kind) + "}"
		}
		return s
	case *ObservationGroup:
		s := "G(" + shape(e.Expr) + ")"
		for _, q := range e.Qualifiers {
			s += "{" + qualifierName(q.Kind) + "}"
		}
		return s
	case *ComparisonOp:
		parts := make([]string, len(e.Operands))
		for i, o := range e.Operands {
			parts[i] = shape(o)
		}
		return e.Op.String() + "(" + strings.Join(parts, ",") + ")"
	case *ComparisonGroup:
		return "g(" + shape(e.Expr) + ")"
	case *Comparison:
		return e.Path.Steps[0].Key
	}
	return fmt.Sprintf("?%T", e)
}

func TestPrecedence(t *testing.T) {
	tests := []struct{ in, want string }{
		// Observation level: FOLLOWEDBY < OR < AND, qualifiers tightest.
		{"[x:a=1] AND [x:b=1] FOLLOWEDBY [x:c=1] OR [x:d=1]", "FOLLOWEDBY(AND([a],[b]),OR([c],[d]))"},
		{"[x:a=1] OR [x:b=1] AND [x:c=1]", "OR([a],AND([b],[c]))"},
		{"[x:a=1] FOLLOWEDBY [x:b=1] FOLLOWEDBY [x:c=1]", "FOLLOWEDBY([a],[b],[c])"},
		{"([x:a=1] OR [x:b=1]) AND [x:c=1]", "AND(G(OR([a],[b])),[c])"},
		{"[x:a=1] AND [x:b=1] WITHIN 5 SECONDS", "AND([a],[b]{WITHIN})"},
		{"([x:a=1] AND [x:b=1]) WITHIN 5 SECONDS", "G(AND([a],[b])){WITHIN}"},
		{"[x:a=1] REPEATS 5 TIMES WITHIN 1800 SECONDS", "[a]{REPEATS}{WITHIN}"},
		{"([x:a=1]) WITHIN 5 SECONDS WITHIN 6 SECONDS", "G([a]){WITHIN}{WITHIN}"},
		// Comparison level: OR < AND.
		{"[x:a=1 OR x:b=1 AND x:c=1]", "[OR(a,AND(b,c))]"},
		{"[x:a=1 AND x:b=1 OR x:c=1]", "[OR(AND(a,b),c)]"},
		{"[(x:a=1 OR x:b=1) AND x:c=1]", "[AND(g(OR(a,b)),c)]"},
		{"( [(network-traffic:dst_port IN(443,6443,8443) AND network-traffic:src_packets != 0) ])", "G([g(AND(dst_port,src_packets))])"},
	}
	for _, tc := range tests {
		p := mustParse(t, tc.in)
		if got := shape(p.Root); got != tc.want {
			t.Errorf("Parse(%q) = %s, want %s", tc.in, got, tc.want)
		}
		checkRoundTrip(t, p)
	}
}

func TestOperators(t *testing.T) {
	tests := []struct {
		in      string
		op      Operator
		negated bool
		want    string // normal form
	}{
		{"[x:a = 1]", OpEqual, false, "[x:a = 1]"},
		{"[x:a == 1]", OpEqual, false, "[x:a = 1]"},
		{"[x:a != 1]", OpNotEqual, false, "[x:a != 1]"},
		{"[x:a <> 1]", OpNotEqual, false, "[x:a != 1]"},
		{"[x:a NOT = 1]", OpEqual, true, "[x:a NOT = 1]"},
		{"[x:a < 1]", OpLess, false, "[x:a < 1]"},
		{"[x:a <= 1.5]", OpLessEqual, false, "[x:a <= 1.5]"},
		{"[x:a > -1]", OpGreater, false, "[x:a > -1]"},
		{"[x:a NOT >= 'b']", OpGreaterEqual, true, "[x:a NOT >= 'b']"},
		{"[x:a IN ('a', 2, true)]", OpIn, false, "[x:a IN ('a', 2, true)]"},
		{"[x:a NOT IN ()]", OpIn, true, "[x:a NOT IN ()]"},
		{"[x:a LIKE 'a%']", OpLike, false, "[x:a LIKE 'a%']"},
		{"[x:a NOT MATCHES '^a$']", OpMatches, true, "[x:a NOT MATCHES '^a$']"},
		{"[x:a ISSUBSET '10.0.0.0/8']", OpIsSubset, false, "[x:a ISSUBSET '10.0.0.0/8']"},
		{"[x:a NOT ISSUPERSET '10.0.0.0/8']", OpIsSuperset, true, "[x:a NOT ISSUPERSET '10.0.0.0/8']"},
		{"[EXISTS x:a.b]", OpExists, false, "[EXISTS x:a.b]"},
		{"[x:a = b'dGVzdA==']", OpEqual, false, "[x:a = b'dGVzdA==']"},
	}
	for _, tc := range tests {
		p := mustParse(t, tc.in)
		c := p.Root.(*Observation).Expr.(*Comparison)
		if c.Op != tc.op || c.Negated != tc.negated {
			t.Errorf("Parse(%q): op %v negated %v, want %v %v", tc.in, c.Op, c.Negated, tc.op, tc.negated)
		}
		if p.String() != tc.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, p.String(), tc.want)
		}
		checkRoundTrip(t, p)
	}
	for _, bad := range []string{"[x:a LIKE 1]", "[x:a MATCHES x:b]", "[x:a ISSUBSET ('a')]", "[x:a IN 1]", "[x:a = x:b]", "[x:a NOT NOT = 1]", "[NOT x:a = 1]", "[x:a =! 1]"} {
		if _, err := parseChecked(t, bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func literalOf(t *testing.T, pattern string) Literal {
	t.Helper()
	return mustParse(t, pattern).Root.(*Observation).Expr.(*Comparison).Value
}

func TestLiterals(t *testing.T) {
	str := literalOf(t, `[x:a = 'it\'s C:\\dir']`)
	if str.Kind != LitString || str.Value != `it's C:\dir` || str.Raw != `'it\'s C:\\dir'` {
		t.Errorf("string literal = %+v", str)
	}
	ints := map[string]int64{"0": 0, "42": 42, "+7": 7, "-13": -13}
	for src, want := range ints {
		l := literalOf(t, "[x:a = "+src+"]")
		if n, err := l.Int(); l.Kind != LitInt || err != nil || n != want {
			t.Errorf("%s: %+v %d %v", src, l, n, err)
		}
	}
	floats := map[string]float64{"7.0": 7, ".5": 0.5, "-0.25": -0.25, "+1.5": 1.5, "00.5": 0.5}
	for src, want := range floats {
		l := literalOf(t, "[x:a = "+src+"]")
		if f, err := l.Float(); l.Kind != LitFloat || err != nil || f != want {
			t.Errorf("%s: %+v %v %v", src, l, f, err)
		}
	}
	for _, src := range []string{"true", "false"} {
		if l := literalOf(t, "[x:a = "+src+"]"); l.Kind != LitBool || l.Value != src {
			t.Errorf("%s: %+v", src, l)
		}
	}
	if b, err := literalOf(t, "[x:a = b'dGVzdA==']").Bytes(); err != nil || string(b) != "test" {
		t.Errorf("binary: %q %v", b, err)
	}
	if b, err := literalOf(t, "[x:a = h'ffd8']").Bytes(); err != nil || !bytes.Equal(b, []byte{0xff, 0xd8}) {
		t.Errorf("hex: %x %v", b, err)
	}
	if b, err := literalOf(t, "[x:a = h'']").Bytes(); err != nil || len(b) != 0 {
		t.Errorf("empty hex: %x %v", b, err)
	}
	ts, err := literalOf(t, "[x:a = t'2016-12-31T23:59:60.5Z']").Time()
	if err != nil || !ts.Equal(time.Date(2017, 1, 1, 0, 0, 0, 5e8, time.UTC)) {
		t.Errorf("leap-second timestamp: %v %v", ts, err)
	}
	ts, err = literalOf(t, "[x:a = t'2024-02-29T12:00:00.123456789Z']").Time()
	if err != nil || !ts.Equal(time.Date(2024, 2, 29, 12, 0, 0, 123456789, time.UTC)) {
		t.Errorf("timestamp: %v %v", ts, err)
	}
	if _, err := literalOf(t, "[x:a = 'x']").Int(); err == nil {
		t.Error("Int on a string literal succeeded")
	}
	for _, bad := range []string{
		"[x:a = b'']", "[x:a = b'abc']", "[x:a = b'ab=c']", "[x:a = b'a===']",
		"[x:a = 'x\\']", "[x:a = '\\x']", "[x:a = 1.]", "[x:a = 1e5]", "[x:a = TRUE]",
		"[x:a = t'2024-01-15t12:30:45Z']", "[x:a = t'2024-01-15T12:30:45.Z']",
		"[x:a = -]", "[x:a = +]", "[x:a = \"x\"]",
	} {
		if _, err := parseChecked(t, bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestObjectPaths(t *testing.T) {
	tests := []struct {
		in    string
		typ   string
		steps []PathStep
		norm  string
	}{
		{"[file:extensions.'windows-pebinary-ext'.sections[*].entropy > 7.0]", "file", []PathStep{
			{Kind: StepKey, Key: "extensions"}, {Kind: StepKey, Key: "windows-pebinary-ext"},
			{Kind: StepKey, Key: "sections"}, {Kind: StepAnyIndex}, {Kind: StepKey, Key: "entropy"},
		}, "file:extensions.'windows-pebinary-ext'.sections[*].entropy"},
		{"[network-connection:extended_properties[0].source_payload MATCHES 'x']", "network-connection", []PathStep{
			{Kind: StepKey, Key: "extended_properties"}, {Kind: StepIndex, Index: 0}, {Kind: StepKey, Key: "source_payload"},
		}, "network-connection:extended_properties[0].source_payload"},
		{"[x:a[-1][+2] = 1]", "x", []PathStep{{Kind: StepKey, Key: "a"}, {Kind: StepIndex, Index: -1}, {Kind: StepIndex, Index: 2}}, "x:a[-1][2]"},
		{"[x-usb-device:'first key'.'it\\'s' = 1]", "x-usb-device", []PathStep{{Kind: StepKey, Key: "first key"}, {Kind: StepKey, Key: "it's"}}, `x-usb-device:'first key'.'it\'s'`},
		{"[ANDROID:OR_x.'AND' = 1]", "ANDROID", []PathStep{{Kind: StepKey, Key: "OR_x"}, {Kind: StepKey, Key: "AND"}}, "ANDROID:OR_x.'AND'"},
		{"[_x:_y = 1]", "_x", []PathStep{{Kind: StepKey, Key: "_y"}}, "_x:_y"},
	}
	for _, tc := range tests {
		p := mustParse(t, tc.in)
		path := p.Root.(*Observation).Expr.(*Comparison).Path
		if path.Type != tc.typ || fmt.Sprint(path.Steps) != fmt.Sprint(tc.steps) {
			t.Errorf("Parse(%q) path = %+v", tc.in, path)
		}
		if path.String() != tc.norm {
			t.Errorf("path %q String() = %q, want %q", tc.in, path.String(), tc.norm)
		}
		checkRoundTrip(t, p)
	}
	for _, bad := range []string{
		"[AND:a = 1]", "[x:AND = 1]", "[x:a-b = 1]", "[x:a.b-c = 1]", "[x:a.[0] = 1]", "[x:[0] = 1]",
		"['x':a = 1]", "[x:a. = 1]", "[x:a[*.b = 1]", "[1x:a = 1]", "[x:a..b = 1]", "[x:a.5 = 1]",
	} {
		if _, err := parseChecked(t, bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestQualifiers(t *testing.T) {
	p := mustParse(t, "[x:a = 1] REPEATS 2 TIMES WITHIN 2.5 SECONDS START t'2016-06-01T01:30:00.123Z' STOP t'2016-06-01T02:20:00Z'")
	qs := p.Root.(*Observation).Qualifiers
	if len(qs) != 3 {
		t.Fatalf("qualifiers = %+v", qs)
	}
	if n, _ := qs[0].Value.Int(); qs[0].Kind != QualifierRepeats || n != 2 {
		t.Errorf("REPEATS = %+v", qs[0])
	}
	if f, _ := qs[1].Value.Float(); qs[1].Kind != QualifierWithin || f != 2.5 {
		t.Errorf("WITHIN = %+v", qs[1])
	}
	start, _ := qs[2].Start.Time()
	stop, _ := qs[2].Stop.Time()
	if qs[2].Kind != QualifierStartStop || !stop.After(start) {
		t.Errorf("START/STOP = %+v", qs[2])
	}
	// The same kind twice is an error on a bracketed observation only.
	for _, ok := range []string{
		"([x:a = 1]) WITHIN 5 SECONDS WITHIN 6 SECONDS",
		"([x:a = 1] REPEATS 2 TIMES) REPEATS 2 TIMES",
		"[x:a = 1] WITHIN 5 SECONDS AND [x:b = 1] WITHIN 6 SECONDS",
	} {
		mustParse(t, ok)
	}
	for _, bad := range []string{
		"[x:a = 1] WITHIN 5 SECONDS REPEATS 2 TIMES WITHIN 6 SECONDS",
		"[x:a = 1] START 'x' STOP t'2016-06-01T02:20:00Z'",
		"[x:a = 1] START t'2016-06-01T02:20:00Z'",
		"[x:a = 1] WITHIN 5",
		"[x:a = 1] REPEATS +0.5 TIMES",
		"WITHIN 5 SECONDS [x:a = 1]",
	} {
		if _, err := parseChecked(t, bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestWhitespaceAndComments(t *testing.T) {
	in := "\u3000[ x:a\t=\n1 /* c [ ] */ ]\u00a0// trailing comment\r\n\u2003AND [x:b = 'é // not a comment']"
	p := mustParse(t, in)
	if got := p.String(); got != "[x:a = 1] AND [x:b = 'é // not a comment']" {
		t.Errorf("String() = %q", got)
	}
}

func TestDepthLimit(t *testing.T) {
	nest := func(n int, open, inner, close string) string {
		return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
	}
	// The bracket is one level; parentheses add the rest.
	mustParse(t, nest(MaxPatternDepth-1, "(", "[x:a = 1]", ")"))
	mustParse(t, "["+nest(MaxPatternDepth-1, "(", "x:a = 1", ")")+"]")
	for _, in := range []string{
		nest(MaxPatternDepth, "(", "[x:a = 1]", ")"),
		"[" + nest(MaxPatternDepth, "(", "x:a = 1", ")") + "]",
		strings.Repeat("(", 1_000_000),
		"[" + strings.Repeat("(", 1_000_000),
	} {
		start := time.Now()
		_, err := parseChecked(t, in)
		var pe *PatternError
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "nesting deeper") {
			t.Errorf("deep input (%d bytes): err = %v", len(in), err)
		}
		if pe != nil && pe.Column != MaxPatternDepth+1 {
			t.Errorf("deep input: column %d, want %d", pe.Column, MaxPatternDepth+1)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("deep input took %v", d)
		}
	}
	// Long flat chains are not nesting and must not recurse.
	obs := strings.Repeat("[x:a = 1] AND ", 50_000) + "[x:a = 1]"
	p := mustParse(t, obs)
	if n := len(p.Root.(*ObservationOp).Operands); n != 50_001 {
		t.Errorf("chain has %d operands", n)
	}
	cmp := "[" + strings.Repeat("x:a = 1 OR ", 50_000) + "x:a = 1]"
	mustParse(t, cmp)
}
