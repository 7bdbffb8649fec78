package stix

import (
	"strings"
	"testing"
)

func TestEqualityPattern(t *testing.T) {
	tests := []struct {
		typ   string
		path  []string
		value string
		want  string
	}{
		{"ipv4-addr", []string{"value"}, "6.6.6.6", "[ipv4-addr:value = '6.6.6.6']"},
		{"file", []string{"hashes", "SHA-256"}, "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f",
			"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']"},
		{"windows-registry-key", []string{"key"}, `HKLM\Software\O'Brien`, `[windows-registry-key:key = 'HKLM\\Software\\O\'Brien']`},
		{"x-custom", []string{"AND", "with space", "true", "_ok1"}, "", `[x-custom:'AND'.'with space'.'true'._ok1 = '']`},
		{"url", []string{"value"}, "http://a/?q=']\"", `[url:value = 'http://a/?q=\']"']`},
		{"email-message", []string{"from_ref", "value"}, "a@b", "[email-message:from_ref.value = 'a@b']"},
	}
	for _, tc := range tests {
		got, err := EqualityPattern(tc.typ, tc.path, tc.value)
		if err != nil || got != tc.want {
			t.Errorf("EqualityPattern(%q, %q, %q) = %q, %v; want %q", tc.typ, tc.path, tc.value, got, err, tc.want)
			continue
		}
		path, value, ok := PointIoC(mustParse(t, got))
		want, _ := NewObjectPath(tc.typ, tc.path...)
		if !ok || value != tc.value || !path.Equal(want) {
			t.Errorf("%s does not round-trip: %s %q %v", got, path, value, ok)
		}
	}
	for _, bad := range []struct {
		typ  string
		path []string
	}{
		{"", []string{"value"}}, {"ipv4 addr", []string{"value"}}, {"1pv4", []string{"value"}},
		{"AND", []string{"value"}}, {"-x", []string{"value"}}, {"ipv4-addr", nil},
	} {
		if got, err := EqualityPattern(bad.typ, bad.path, "v"); err == nil {
			t.Errorf("EqualityPattern(%q, %q) = %q, want an error", bad.typ, bad.path, got)
		}
	}
	// A value that is not a valid hash cannot become a pattern: it would
	// be refused by every STIX validator downstream.
	if _, err := EqualityPattern("file", []string{"hashes", "MD5"}, "nope"); err == nil {
		t.Error("EqualityPattern built a pattern with a malformed MD5")
	}
}

func TestCompoundPatterns(t *testing.T) {
	domain, err := Equals("domain-name", []string{"value"}, "evil.example")
	if err != nil {
		t.Fatal(err)
	}
	ip, err := EqualsPath(ObjectPath{Type: "domain-name", Steps: []PathStep{
		{Kind: StepKey, Key: "resolves_to_refs"}, {Kind: StepAnyIndex}, {Kind: StepKey, Key: "value"},
	}}, "6.6.6.6")
	if err != nil {
		t.Fatal(err)
	}
	v6, _ := Equals("ipv6-addr", []string{"value"}, "::1")
	tests := []struct {
		expr ComparisonExpr
		want string
	}{
		{And(domain, ip), "[domain-name:value = 'evil.example' AND domain-name:resolves_to_refs[*].value = '6.6.6.6']"},
		{Or(domain, ip), "[domain-name:value = 'evil.example' OR domain-name:resolves_to_refs[*].value = '6.6.6.6']"},
		{And(Or(domain, v6), ip), "[(domain-name:value = 'evil.example' OR ipv6-addr:value = '::1') AND domain-name:resolves_to_refs[*].value = '6.6.6.6']"},
		{Or(And(domain, ip), v6), "[domain-name:value = 'evil.example' AND domain-name:resolves_to_refs[*].value = '6.6.6.6' OR ipv6-addr:value = '::1']"},
		{And(And(domain, ip), v6), "[domain-name:value = 'evil.example' AND domain-name:resolves_to_refs[*].value = '6.6.6.6' AND ipv6-addr:value = '::1']"},
		{And(domain), "[domain-name:value = 'evil.example']"},
	}
	for _, tc := range tests {
		p, err := NewPattern(tc.expr)
		if err != nil {
			t.Errorf("NewPattern: %v", err)
			continue
		}
		if p.String() != tc.want {
			t.Errorf("got  %s\nwant %s", p, tc.want)
		}
		if q := mustParse(t, tc.want); shape(q.Root) != shape(p.Root) {
			t.Errorf("built tree %s differs from parsed %s", shape(p.Root), shape(q.Root))
		}
	}
	// Nested same-operator chains keep their shape with parentheses.
	nested := &ComparisonOp{Op: BoolOr, Operands: []ComparisonExpr{domain, &ComparisonOp{Op: BoolOr, Operands: []ComparisonExpr{ip, v6}}}}
	p, err := NewPattern(nested)
	if err != nil || !strings.Contains(p.String(), "OR (") {
		t.Errorf("nested OR: %v %v", p, err)
	}
	for _, bad := range []ComparisonExpr{nil, And(), &ComparisonOp{Op: BoolAnd}, &ComparisonGroup{}, &Comparison{}} {
		if _, err := NewPattern(bad); err == nil {
			t.Errorf("NewPattern(%#v) succeeded", bad)
		}
	}
	if _, err := EqualsPath(ObjectPath{Type: "x", Steps: []PathStep{{Kind: StepAnyIndex}}}, "v"); err == nil {
		t.Error("EqualsPath accepted a path starting with a list step")
	}
}
