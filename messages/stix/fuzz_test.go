package stix

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

func FuzzParsePattern(f *testing.F) {
	for _, prefix := range []string{"valid-", "invalid-"} {
		for _, file := range patternFiles(f, prefix) {
			for _, line := range patternLines(f, file) {
				f.Add(line)
			}
		}
	}
	for _, s := range []string{
		"[x:a = 1] /* c */ // d", "[EXISTS x:a[*].'b c'[-1]]", "[x:a IN ()]", "[x:a NOT IN (b'dGVzdA==', h'ff', t'2024-02-29T00:00:00Z', -.5, true)]",
		"((([x:a = 1]) WITHIN 1.5 SECONDS) REPEATS 2 TIMES) START t'2024-01-01T00:00:00Z' STOP t'2024-01-01T00:00:01Z'",
		"[x:a = '\u00e9\u3000'] \u3000AND\u2028[x:b <> 'c']",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseChecked(t, s)
		if err != nil {
			var pe *PatternError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *PatternError", err)
			}
			if pe.Offset < 0 || pe.Offset > len(s) || pe.Column < 1 || pe.Column > utf8.RuneCountInString(s)+1 {
				t.Fatalf("error position out of range: %+v for %d bytes", pe, len(s))
			}
			return
		}
		norm := p.String()
		q, err := Parse(norm)
		if err != nil {
			t.Fatalf("normal form %q of %q does not parse: %v", norm, s, err)
		}
		if q.String() != norm {
			t.Fatalf("normal form not stable: %q -> %q", norm, q.String())
		}
		if path, value, ok := PointIoC(p); ok {
			path2, value2, ok2 := PointIoC(q)
			if !ok2 || value2 != value || !path2.Equal(path) {
				t.Fatalf("point IoC changed by normalisation: %s=%q vs %s=%q", path, value, path2, value2)
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "stix", "*.json"))
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		var bundle struct{ Objects []json.RawMessage }
		if json.Unmarshal(b, &bundle) == nil {
			for _, o := range bundle.Objects {
				f.Add([]byte(o))
			}
		}
	}
	f.Add([]byte(`{"type":"indicator","type":"sighting"}`))
	f.Add([]byte(`{"\u0074ype":"snapshotrequest","snapshot_type":1,"snapshot_id":"x","snapshot":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		typ, id, err := Peek(b)
		valid := json.Valid(b)
		if err == nil {
			if !valid {
				t.Fatalf("Peek accepted invalid JSON %q", b)
			}
			// Peek must agree with a full reader about routing.
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("Peek accepted %q but encoding/json: %v", b, err)
			}
			if m["type"] != typ {
				t.Fatalf("Peek type %q, encoding/json %v", typ, m["type"])
			}
			if gotID, has := m["id"]; has && gotID != id || !has && id != "" {
				t.Fatalf("Peek id %q, encoding/json %v", id, m["id"])
			}
		} else if valid && bytes.TrimSpace(b)[0] == '{' && errors.Is(err, ErrMalformedJSON) {
			t.Fatalf("Peek called valid JSON malformed: %q: %v", b, err)
		}

		msg, err := Decode(b)
		if err == nil {
			if !valid || !bytes.Equal(msg.Bytes(), orig) {
				t.Fatalf("Decode accepted invalid JSON or changed the bytes: %q", b)
			}
			if msg.MessageType() != typ {
				t.Fatalf("Decode type %q, Peek %q", msg.MessageType(), typ)
			}
		}
		if ind, err := DecodeIndicator(b); err == nil {
			if (ind.PatternType == "stix") != (ind.Parsed != nil) {
				t.Fatal("Parsed does not match pattern_type")
			}
			if ind.Parsed != nil {
				if _, err := Parse(ind.Parsed.String()); err != nil {
					t.Fatalf("normal form of %q does not parse: %v", ind.Pattern, err)
				}
			}
		}
		if s, err := DecodeSighting(b); err == nil && s.Indicator != nil {
			_, _ = s.SightedIndicator()
		}
		if e, err := DecodeSnapshotEnvelope(b); err == nil {
			if _, _, err := Peek(e.Body); err != nil {
				t.Fatalf("envelope body does not Peek: %v", err)
			}
		}
		_, _ = DecodeSnapshotRequest(b)
		if !bytes.Equal(b, orig) {
			t.Fatal("a decoder modified its input")
		}
	})
}

func FuzzEqualityPattern(f *testing.F) {
	f.Add("ipv4-addr", "value", "", "6.6.6.6")
	f.Add("file", "hashes", "SHA-256", "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f")
	f.Add("x-custom", "AND", "it's", `C:\dir\`)
	f.Add("url", "value", "", "']\n/* x */")
	f.Fuzz(func(t *testing.T, typ, key1, key2, value string) {
		keys := []string{key1}
		if key2 != "" {
			keys = append(keys, key2)
		}
		s, err := EqualityPattern(typ, keys, value)
		want, pathErr := NewObjectPath(typ, keys...)
		if err != nil {
			// Only an invalid object type or a value that cannot be a
			// hash of the named algorithm may stop construction.
			if pathErr == nil {
				if _, isHash := want.hashAlgoOf(); !isHash {
					t.Fatalf("EqualityPattern(%q, %q, %q) failed: %v", typ, keys, value, err)
				}
			}
			return
		}
		p, err := Parse(s)
		if err != nil {
			t.Fatalf("built %q, which does not parse: %v", s, err)
		}
		path, got, ok := PointIoC(p)
		if !ok || got != value || !path.Equal(want) {
			t.Fatalf("built %q: PointIoC = %s %q %v, want %s %q", s, path, got, ok, want, value)
		}
	})
}
