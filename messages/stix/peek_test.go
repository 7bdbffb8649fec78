package stix

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const indicatorID = "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb"

func TestPeek(t *testing.T) {
	tests := []struct {
		name, in, typ, id string
	}{
		{"testdata", string(readTestdata(t, "stix/indicator-domain.json")), "indicator", indicatorID},
		{"nested type first", `{"x":{"type":"sighting","id":"sighting--x"},"type":"indicator","id":"i"}`, "indicator", "i"},
		{"type in array", `{"a":[{"type":"sighting"},["type","sighting"]],"type":"indicator"}`, "indicator", ""},
		{"type in string", `{"description":"\"type\":\"sighting\", \\\"id\\\"","type":"indicator","id":"i"}`, "indicator", "i"},
		{"escaped key", `{"\u0074ype":"sighting","i\u0064":"s"}`, "sighting", "s"},
		{"escaped value", `{"type":"indic\u0061tor","id":"a\/b"}`, "indicator", "a/b"},
		{"other type", `{"type":"malware","id":"malware--1"}`, "malware", "malware--1"},
		{"whitespace", " \t\r\n{ \"id\" : \"i\" , \"type\" : \"sighting\" } \n", "sighting", "i"},
		{"all value kinds", `{"n":-0.5e+10,"z":0,"t":true,"f":false,"u":null,"o":{},"a":[],"s":"","type":"x"}`, "x", ""},
		{"snapshot", string(readTestdata(t, "stix/snapshotrequest.json")), "snapshotrequest", ""},
		{"unicode", `{"name":"日本\u00e9","type":"indicator"}`, "indicator", ""},
	}
	for _, tc := range tests {
		typ, id, err := Peek([]byte(tc.in))
		if err != nil || typ != tc.typ || id != tc.id {
			t.Errorf("%s: Peek = %q, %q, %v; want %q, %q", tc.name, typ, id, err, tc.typ, tc.id)
		}
	}
}

func TestPeekRejects(t *testing.T) {
	tests := []struct {
		name, in string
		field    string // "" for JSON syntax errors
	}{
		{"duplicate type", `{"type":"indicator","type":"sighting"}`, "type"},
		{"duplicate type via escape", `{"type":"indicator","\u0074ype":"sighting"}`, "type"},
		{"duplicate id", `{"type":"indicator","id":"a","id":"b"}`, "id"},
		{"missing type", `{"id":"a","x":{"type":"indicator"}}`, "type"},
		{"type not a string", `{"type":1}`, "type"},
		{"type null", `{"type":null}`, "type"},
		{"id not a string", `{"type":"indicator","id":["a"]}`, "id"},
		{"empty", ``, ""},
		{"trailing data", `{"type":"indicator"}x`, ""},
		{"two objects", `{"type":"indicator"}{"type":"sighting"}`, ""},
		{"truncated", `{"type":"indicator","id":"a"`, ""},
		{"truncated nested", `{"type":"indicator","x":{"a":[1,2}`, ""},
		{"mismatched close", `{"type":"indicator","x":[1}`, ""},
		{"bad escape", `{"type":"indi\qcator"}`, ""},
		{"bad unicode escape", `{"type":"\u12G4"}`, ""},
		{"control char", "{\"type\":\"a\nb\"}", ""},
		{"trailing comma", `{"type":"indicator",}`, ""},
		{"nested trailing comma", `{"type":"indicator","a":[1,]}`, ""},
		{"missing colon", `{"type" "indicator"}`, ""},
		{"bare word", `{"type":indicator}`, ""},
		{"bad literal", `{"type":"x","a":tru}`, ""},
		{"leading zero", `{"type":"x","a":01}`, ""},
		{"bad fraction", `{"type":"x","a":1.}`, ""},
		{"bad exponent", `{"type":"x","a":1e}`, ""},
		{"plus sign", `{"type":"x","a":+1}`, ""},
		{"single quotes", `{'type':'x'}`, ""},
		{"unquoted key", `{type:"x"}`, ""},
		{"too deep", `{"type":"x","a":` + strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1) + `}`, ""},
	}
	for _, tc := range tests {
		_, _, err := Peek([]byte(tc.in))
		if err == nil {
			t.Errorf("%s: Peek accepted %q", tc.name, tc.in)
			continue
		}
		var fe *FieldError
		switch {
		case tc.field == "" && !errors.Is(err, ErrMalformedJSON):
			t.Errorf("%s: err = %v, want ErrMalformedJSON", tc.name, err)
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("%s: err = %v, want a FieldError for %q", tc.name, err, tc.field)
		}
		if json.Valid([]byte(tc.in)) && tc.field == "" {
			t.Errorf("%s: test case is valid JSON", tc.name)
		}
	}
	// Well-formed JSON that is not an object is not a message.
	for _, in := range []string{`["type","indicator"]`, `"indicator"`, `1`, `null`, `true`} {
		if _, _, err := Peek([]byte(in)); !errors.Is(err, ErrMalformedJSON) {
			t.Errorf("Peek(%s) err = %v, want ErrMalformedJSON", in, err)
		}
	}
	// Deep nesting within the limit is fine and does not need the stack.
	deep := `{"type":"x","a":` + strings.Repeat(`{"b":[`, maxJSONDepth/2-1) + strings.Repeat(`]}`, maxJSONDepth/2-1) + `}`
	if typ, _, err := Peek([]byte(deep)); err != nil || typ != "x" {
		t.Errorf("deep but legal: %q %v", typ, err)
	}
}

func TestPeekAgreesWithEncodingJSON(t *testing.T) {
	// Peek and encoding/json must agree on what is JSON; otherwise the bus
	// would route messages its subscribers cannot read.
	inputs := []string{
		`{"type":"a"}`, `{"type":"a","x":1.5E-3}`, `{"type":"a","x":-0}`, `{"type":"a","x":"\ud800"}`,
		`{"type":"a","x":"\u00e9\t"}`, "{\"type\":\"a\",\"x\":\"\xff\"}", `{"type":"a","x":[[[]]],"y":{"z":{}}}`,
		`{"type":"a"} `, `{"type":"a"`, `{"type":"a","x":[1 2]}`, `{"type":"a","x":{"k" 1}}`, `{"type":"a","x":"\/"}`,
		`{"type":"a","x":{"k":1,}}`, `{"type":"a","x":0.0e0}`, `{"type":"a","x":-}`, `{"type":"a","x":nul}`,
		// Exactly at and just past encoding/json's nesting limit.
		`{"type":"a","x":` + strings.Repeat("[", maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1) + `}`,
		`{"type":"a","x":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`,
	}
	for _, in := range inputs {
		_, _, err := Peek([]byte(in))
		if (err == nil) != json.Valid([]byte(in)) {
			t.Errorf("Peek(%q) err = %v but json.Valid = %v", in, err, json.Valid([]byte(in)))
		}
	}
}

func TestPeekInternsTypes(t *testing.T) {
	b := readTestdata(t, "stix/indicator-domain.json")
	allocs := testing.AllocsPerRun(100, func() {
		if typ, _, err := Peek(b); err != nil || typ != TypeIndicator {
			t.Fatal(typ, err)
		}
	})
	// One allocation for the id string; the type is a package constant.
	if allocs > 1 {
		t.Errorf("Peek allocates %v times per call, want at most 1", allocs)
	}
}

func TestTopicFor(t *testing.T) {
	want := map[string]string{
		"indicator":        "stix2/indicator",
		"sighting":         "stix2/sighting",
		"snapshotrequest":  "threatbus/snapshotrequest",
		"snapshotenvelope": "threatbus/snapshotenvelope",
	}
	for typ, topic := range want {
		if got, err := TopicFor(typ); err != nil || got != topic {
			t.Errorf("TopicFor(%q) = %q, %v; want %q", typ, got, err, topic)
		}
	}
	for _, typ := range []string{"", "Indicator", "malware", "stix2/indicator", "bundle"} {
		if _, err := TopicFor(typ); !errors.Is(err, ErrUnknownType) {
			t.Errorf("TopicFor(%q) err = %v, want ErrUnknownType", typ, err)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " backslash \ slash /`, "ctl \x00\x01\x1f\n\r\t", "<>&", "é日本",
		"bad \xff utf8 \xc3", "line\u2028sep\u2029", "[ipv4-addr:value > '6.6.6.6']",
	} {
		enc := appendString(nil, s)
		if !json.Valid(enc) {
			t.Errorf("appendString(%q) = %s is not JSON", s, enc)
			continue
		}
		var back string
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatal(err)
		}
		// encoding/json is the reference for what s should read back as
		// (each invalid UTF-8 byte becomes U+FFFD).
		ref, _ := json.Marshal(s)
		var want string
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if back != want {
			t.Errorf("appendString(%q) decodes to %q", s, back)
		}
	}
	if got := string(appendString(nil, "a > b & c < d")); got != `"a > b & c < d"` {
		t.Errorf("HTML characters escaped: %s", got)
	}
}

// TestStringScannerEveryPosition puts each interesting byte at every
// offset of strings around the 8-byte SWAR word size and checks the scanner
// against encoding/json.
func TestStringScannerEveryPosition(t *testing.T) {
	specials := []string{`"`, `\`, `\"`, `\\`, `\u00e9`, `\x`, "\x00", "\x1f", "\x7f", "\x80", "é", " ", "'"}
	for n := 0; n <= 24; n++ {
		for pos := 0; pos <= n; pos++ {
			for _, sp := range specials {
				str := strings.Repeat("a", pos) + sp + strings.Repeat("b", n-pos)
				in := `{"type":"x","v":"` + str + `"}`
				_, _, err := Peek([]byte(in))
				if (err == nil) != json.Valid([]byte(in)) {
					t.Fatalf("%q: Peek err %v, json.Valid %v", in, err, json.Valid([]byte(in)))
				}
			}
		}
	}
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(w[i])
			}
			if got, want := swarStop(x) != 0, strSpecial[c]; got != want {
				t.Fatalf("swarStop(byte %#x at %d) = %v, want %v", c, pos, got, want)
			}
		}
	}
}
