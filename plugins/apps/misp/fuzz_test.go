package misp

import (
	"strings"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages/stix"
)

// FuzzAttribute feeds arbitrary bytes to the attribute decoder, the
// filters and the mapper, as the ZeroMQ and Kafka intakes do, and to the
// snapshot path. Nothing may panic, and whatever comes out must be an
// indicator the bus accepts, named after the attribute.
func FuzzAttribute(f *testing.F) {
	for _, file := range testdataFiles(f) {
		f.Add(readTestdata(f, file))
	}
	f.Add(msg("add", `"uuid": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "type": "stix2-pattern", "value": "[ipv4-addr:value = '1.2.3.4'] AND ([x:y = 1] OR [x:z = 2]) REPEATS 3 TIMES", "to_ids": true`, true))
	f.Add(msg("edit", `"uuid": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "type": "filename|sha256", "value": "a'b\\c|`+sha256Hex+`", "to_ids": "1", "timestamp": 1.6e9`, true))
	f.Add(msg("delete", `"uuid": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "type": "AS", "value": "AS64496", "Tag": [{"name": "x"}, "y", null]`, false))
	f.Add([]byte(`{"Attribute": {"type": "ip-dst|port", "value": "1.2.3.4|80"}, "Event": {"Orgc": {"id": 7}, "Tag": []}}`))
	f.Add([]byte(`{"response": {"Attribute": []}}`))
	filters := []Filter{{Orgs: []string{"1"}, Types: []string{"domain", "ip-dst"}}, {Tags: []string{"tlp:red"}}}
	now := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range []*processor{newProcessor(nil), newProcessor(filters)} {
			ind, err := p.process(data, now)
			checkFuzzed(t, data, ind, err)
			// The same message twice (the filter memory) must not break either.
			ind, err = p.process(data, now)
			checkFuzzed(t, data, ind, err)
		}
		ind, _, err := snapshotIndicator(data, now)
		checkFuzzed(t, data, ind, err)
		if m, err := decodeMessage(data); err == nil {
			ind, _, err := snapshotIndicator(reencoded(m), now)
			checkFuzzed(t, data, ind, err)
		}
	})
}

func reencoded(m *message) []byte {
	// Re-encode the decoded attribute's fields: a second, differently
	// shaped input for the snapshot path.
	return msgBody(string(m.Attribute.UUID), string(m.Attribute.Type), string(m.Attribute.Value))
}

func msgBody(uuid, typ, value string) []byte {
	return []byte(`{"uuid": ` + quote(uuid) + `, "type": ` + quote(typ) + `, "value": ` + quote(value) + `, "to_ids": true}`)
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func checkFuzzed(t *testing.T, data []byte, ind *stix.Indicator, err error) {
	t.Helper()
	if err != nil {
		if _, ok := err.(*skip); !ok {
			t.Fatalf("%q: error %v is not a *skip", data, err)
		}
		if ind != nil {
			t.Fatalf("%q: an indicator and an error", data)
		}
		return
	}
	got, derr := stix.DecodeIndicator(ind.Raw)
	if derr != nil {
		t.Fatalf("%q: produced an invalid indicator %s: %v", data, ind.Raw, derr)
	}
	if _, perr := stix.Parse(got.Pattern); perr != nil {
		t.Fatalf("%q: produced pattern %q does not parse: %v", data, got.Pattern, perr)
	}
	if got.PatternType != "stix" || !strings.HasPrefix(got.ID, "indicator--") || got.ID != strings.ToLower(got.ID) {
		t.Fatalf("%q: produced %s", data, ind.Raw)
	}
	if got.Created.Location() != time.UTC || !got.Created.Equal(got.ValidFrom) || !got.Created.Equal(got.Modified) {
		t.Fatalf("%q: timestamps %s", data, ind.Raw)
	}
}

// FuzzPattern maps arbitrary types and values: a pattern that comes out
// must parse, and contain the value's quoted form where one is expected.
func FuzzPattern(f *testing.F) {
	for _, c := range [][2]string{
		{"ip-dst", "2001:db8::1"}, {"domain", "it's\\here"}, {"AS", "as0"}, {"filename|md5", "x|" + md5Hex},
		{"stix2-pattern", "[a:b = 'c']"}, {"mac-address", "AA-BB-CC-DD-EE-FF"}, {"domain|ip", "|"}, {"url", "\x00'\n"},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, typ, value string) {
		p, err := patternFor(typ, value, "", "")
		if err != nil {
			if _, ok := err.(*skip); !ok {
				t.Fatalf("%q %q: error %v is not a *skip", typ, value, err)
			}
			return
		}
		if _, err := stix.Parse(p); err != nil {
			t.Fatalf("%q %q: pattern %q does not parse: %v", typ, value, p, err)
		}
		if tgt, ok := simpleTypes[typ]; ok && tgt.kind == kindString && !strings.Contains(p, stix.StringLiteral(value).Raw) {
			t.Fatalf("%q %q: pattern %q lacks the quoted value", typ, value, p)
		}
	})
}
