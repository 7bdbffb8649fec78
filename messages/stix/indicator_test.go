package stix

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var baseIndicator = props{
	{"type", `"indicator"`},
	{"spec_version", `"2.1"`},
	{"id", `"indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb"`},
	{"created", `"2021-01-15T15:29:05.000Z"`},
	{"modified", `"2021-01-15T15:29:05.000Z"`},
	{"pattern", `"[domain-name:value = 'example.com']"`},
	{"pattern_type", `"stix"`},
	{"pattern_version", `"2.1"`},
	{"valid_from", `"2021-01-15T15:29:05.000Z"`},
}

func TestDecodeIndicator(t *testing.T) {
	b := readTestdata(t, "stix/indicator-domain.json")
	ind, err := DecodeIndicator(b)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2021, 1, 15, 15, 29, 5, 0, time.UTC)
	if ind.ID != indicatorID || ind.Type != "indicator" || ind.SpecVersion != "2.1" ||
		!ind.Created.Equal(want) || !ind.Modified.Equal(want) || !ind.ValidFrom.Equal(want) ||
		ind.Pattern != "[domain-name:value = 'example.com']" || ind.PatternType != "stix" ||
		ind.PatternVersion != "2.1" || !ind.ValidUntil.IsZero() || ind.Update != UpdateNone {
		t.Errorf("decoded %+v", ind)
	}
	if path, value, ok := PointIoC(ind.Parsed); !ok || path.String() != "domain-name:value" || value != "example.com" {
		t.Errorf("parsed pattern: %v %q %v", path, value, ok)
	}
	if &ind.Raw[0] != &b[0] || len(ind.Raw) != len(b) {
		t.Error("Raw is not the decoded slice")
	}

	rm, err := DecodeIndicator(readTestdata(t, "stix/indicator-remove.json"))
	if err != nil || rm.Update != UpdateRemove || !rm.Modified.After(rm.Created) {
		t.Errorf("indicator-remove.json: %+v %v", rm, err)
	}
	edit, err := DecodeIndicator(baseIndicator.with("x_threatbus_update", `"EDIT"`).json())
	if err != nil || edit.Update != UpdateEdit {
		t.Errorf("EDIT: %+v %v", edit, err)
	}
}

// TestIndicatorUnknownPropertiesSurvive: OpenCTI's own properties must
// leave the bus exactly as they came in.
func TestIndicatorUnknownPropertiesSurvive(t *testing.T) {
	b := readTestdata(t, "stix/indicator-opencti-style.json")
	orig := bytes.Clone(b)
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Bytes(), orig) || !bytes.Equal(b, orig) {
		t.Fatal("decoding changed the message bytes")
	}
	for _, prop := range []string{
		`"x_opencti_score": 80`, `"x_opencti_detection": true`, `"x_opencti_main_observable_type": "IPv4-Addr"`,
		`"confidence": 75`, `"object_marking_refs": ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"]`,
		`"kill_chain_phases": [{"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"}]`,
	} {
		if !bytes.Contains(m.Bytes(), []byte(prop)) {
			t.Errorf("%s lost", prop)
		}
	}
	ind := m.(*Indicator)
	if !ind.ValidUntil.Equal(time.Date(2023, 3, 2, 10, 11, 12, 345e6, time.UTC)) {
		t.Errorf("valid_until = %v", ind.ValidUntil)
	}
	// The envelope embeds the bytes, not a re-encoding.
	env, err := NewSnapshotEnvelope(SnapshotIndicators, "id", ind.Raw)
	if err != nil || !bytes.Contains(env.Raw, orig[:len(orig)-1]) || !bytes.Equal(env.Body, bytes.TrimSpace(orig)) {
		t.Errorf("envelope changed the body: %v", err)
	}
}

func TestDecodeIndicatorAccepts(t *testing.T) {
	tests := map[string]props{
		"no pattern_version":      baseIndicator.without("pattern_version"),
		"offset timestamps":       baseIndicator.with("created", `"2021-01-15T16:29:05+01:00"`),
		"uuid v1":                 baseIndicator.with("id", `"indicator--42d31a5b-2da0-1bdd-9823-1723a98fc2fb"`),
		"escaped strings":         baseIndicator.with("pattern", `"[domain-name:value = 'ex\u0061mple.com']"`),
		"non-stix pattern":        baseIndicator.with("pattern_type", `"sigma"`).with("pattern", `"title: x\ndetection: y"`),
		"valid_until later":       baseIndicator.with("valid_until", `"2022-01-01T00:00:00Z"`),
		"unknown null property":   baseIndicator.with("x_other", `null`),
		"property order reversed": reverse(baseIndicator),
	}
	for name, p := range tests {
		ind, err := DecodeIndicator(p.json())
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if (ind.PatternType == "stix") != (ind.Parsed != nil) {
			t.Errorf("%s: Parsed = %v for pattern_type %q", name, ind.Parsed, ind.PatternType)
		}
	}
}

func reverse(p props) props {
	out := make(props, len(p))
	for i := range p {
		out[len(p)-1-i] = p[i]
	}
	return out
}

func TestDecodeIndicatorRejects(t *testing.T) {
	tests := []struct {
		name  string
		in    props
		field string
	}{
		{"type missing", baseIndicator.without("type"), "type"},
		{"type sighting", baseIndicator.with("type", `"sighting"`), "type"},
		{"type number", baseIndicator.with("type", `1`), "type"},
		{"spec_version missing", baseIndicator.without("spec_version"), "spec_version"},
		{"spec_version 2.0", baseIndicator.with("spec_version", `"2.0"`), "spec_version"},
		{"id missing", baseIndicator.without("id"), "id"},
		{"id of other type", baseIndicator.with("id", `"sighting--42d31a5b-2da0-4bdd-9823-1723a98fc2fb"`), "id"},
		{"id not a uuid", baseIndicator.with("id", `"indicator--example"`), "id"},
		{"id uuid v6", baseIndicator.with("id", `"indicator--42d31a5b-2da0-6bdd-9823-1723a98fc2fb"`), "id"},
		{"created missing", baseIndicator.without("created"), "created"},
		{"created impossible", baseIndicator.with("created", `"2021-02-30T00:00:00Z"`), "created"},
		{"created garbage", baseIndicator.with("created", `"yesterday"`), "created"},
		{"created number", baseIndicator.with("created", `1610724545`), "created"},
		{"modified missing", baseIndicator.without("modified"), "modified"},
		{"modified before created", baseIndicator.with("modified", `"2021-01-15T15:29:04.999Z"`), "modified"},
		{"pattern missing", baseIndicator.without("pattern"), "pattern"},
		{"pattern null", baseIndicator.with("pattern", `null`), "pattern"},
		{"pattern invalid", baseIndicator.with("pattern", `"[domain-name:value = ]"`), "pattern"},
		{"pattern duplicated", baseIndicator.plus("pattern", `"[x:y = 1]"`), "pattern"},
		{"pattern_type missing", baseIndicator.without("pattern_type"), "pattern_type"},
		{"pattern_version number", baseIndicator.with("pattern_version", `2.1`), "pattern_version"},
		{"valid_from missing", baseIndicator.without("valid_from"), "valid_from"},
		{"valid_from invalid", baseIndicator.with("valid_from", `"2021-01-15T25:00:00Z"`), "valid_from"},
		{"valid_until before valid_from", baseIndicator.with("valid_until", `"2020-01-01T00:00:00Z"`), "valid_until"},
		{"valid_until equal valid_from", baseIndicator.with("valid_until", `"2021-01-15T15:29:05Z"`), "valid_until"},
		{"update unknown", baseIndicator.with("x_threatbus_update", `"DELETE"`), "x_threatbus_update"},
		{"update lower case", baseIndicator.with("x_threatbus_update", `"remove"`), "x_threatbus_update"},
		{"update null", baseIndicator.with("x_threatbus_update", `null`), "x_threatbus_update"},
		{"update empty", baseIndicator.with("x_threatbus_update", `""`), "x_threatbus_update"},
	}
	for _, tc := range tests {
		_, err := DecodeIndicator(tc.in.json())
		wantFieldError(t, tc.name, err, tc.field)
	}
	// A pattern error keeps its column for the operator.
	_, err := DecodeIndicator(baseIndicator.with("pattern", `"[domain-name:value = ]"`).json())
	var pe *PatternError
	if !errors.As(err, &pe) || pe.Column != 22 {
		t.Errorf("pattern error = %v, want column 22", err)
	}
	if _, err := DecodeIndicator([]byte(`{"type":"indicator",`)); err == nil {
		t.Error("truncated JSON accepted")
	}
}

var uuidV4 = regexp.MustCompile(`^indicator--[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
var millis = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestNewIndicatorExact(t *testing.T) {
	ts := time.Date(2021, 1, 15, 15, 29, 5, 0, time.UTC)
	ind, err := NewIndicator("[ipv4-addr:value = '6.6.6.6']", ts, WithID("indicator--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc"), WithCreated(ts))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"indicator","spec_version":"2.1","id":"indicator--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc",` +
		`"created":"2021-01-15T15:29:05.000Z","modified":"2021-01-15T15:29:05.000Z",` +
		`"pattern":"[ipv4-addr:value = '6.6.6.6']","pattern_type":"stix","pattern_version":"2.1",` +
		`"valid_from":"2021-01-15T15:29:05.000Z"}`
	if string(ind.Raw) != want {
		t.Errorf("got  %s\nwant %s", ind.Raw, want)
	}
}

func TestNewIndicatorDefaultsAndOptions(t *testing.T) {
	before := time.Now()
	local := time.FixedZone("CET", 3600)
	vf := time.Date(2021, 1, 15, 16, 29, 5, 123456789, local)
	ind, err := NewIndicator(`[file:name = 'it\'s.exe']`, vf,
		WithUpdate(UpdateRemove),
		WithValidUntil(vf.Add(time.Hour)),
		WithProperty("name", json.RawMessage(`"evil file"`)),
		WithProperty("x_opencti_score", json.RawMessage(" 80 ")),
		WithProperty("labels", json.RawMessage(`[ "a", "b" ]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(ind.Raw, &m); err != nil {
		t.Fatal(err)
	}
	id := m["id"].(string)
	if !uuidV4.MatchString(id) {
		t.Errorf("id %q is not a lower-case UUIDv4 id", id)
	}
	if u, err := uuid.Parse(strings.TrimPrefix(id, "indicator--")); err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
		t.Errorf("id %q: %v", id, err)
	}
	for _, k := range []string{"created", "modified", "valid_from", "valid_until"} {
		if s, _ := m[k].(string); !millis.MatchString(s) {
			t.Errorf("%s = %q, want UTC with exactly milliseconds", k, s)
		}
	}
	if m["valid_from"] != "2021-01-15T15:29:05.123Z" || m["valid_until"] != "2021-01-15T16:29:05.123Z" {
		t.Errorf("valid_from/until = %v/%v", m["valid_from"], m["valid_until"])
	}
	if ind.Created.Before(before.Truncate(time.Millisecond)) || ind.Created.After(time.Now()) || !ind.Modified.Equal(ind.Created) {
		t.Errorf("created %v / modified %v not now", ind.Created, ind.Modified)
	}
	if m["spec_version"] != "2.1" || m["pattern_type"] != "stix" || m["pattern_version"] != "2.1" ||
		m["x_threatbus_update"] != "REMOVE" || m["name"] != "evil file" || m["x_opencti_score"] != 80.0 ||
		ind.Update != UpdateRemove || ind.Pattern != `[file:name = 'it\'s.exe']` {
		t.Errorf("emitted %s", ind.Raw)
	}
	if !bytes.Contains(ind.Raw, []byte(`"labels":["a","b"]`)) {
		t.Errorf("extra property not compacted: %s", ind.Raw)
	}
	two, _ := NewIndicator("[x:a = 1]", vf)
	if two.ID == ind.ID {
		t.Error("two indicators got the same id")
	}
}

func TestNewIndicatorErrors(t *testing.T) {
	ts := time.Date(2021, 1, 15, 15, 29, 5, 0, time.UTC)
	tests := []struct {
		name    string
		pattern string
		from    time.Time
		opts    []Option
		field   string
	}{
		{"bad pattern", "[x:a = ]", ts, nil, "pattern"},
		{"zero valid_from", "[x:a = 1]", time.Time{}, nil, "valid_from"},
		{"year 10000", "[x:a = 1]", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), nil, "valid_from"},
		{"foreign id", "[x:a = 1]", ts, []Option{WithID("sighting--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc")}, "id"},
		{"modified before created", "[x:a = 1]", ts, []Option{WithCreated(ts), WithModified(ts.Add(-time.Second))}, "modified"},
		{"reserved property", "[x:a = 1]", ts, []Option{WithProperty("pattern", json.RawMessage(`"x"`))}, "pattern"},
		{"bad property name", "[x:a = 1]", ts, []Option{WithProperty("Name", json.RawMessage(`"x"`))}, "Name"},
		{"short property name", "[x:a = 1]", ts, []Option{WithProperty("ab", json.RawMessage(`"x"`))}, "ab"},
		{"property twice", "[x:a = 1]", ts, []Option{WithProperty("name", json.RawMessage(`"x"`)), WithProperty("name", json.RawMessage(`"y"`))}, "name"},
		{"property not JSON", "[x:a = 1]", ts, []Option{WithProperty("name", json.RawMessage(`{`))}, "name"},
		{"property null", "[x:a = 1]", ts, []Option{WithProperty("name", json.RawMessage(`null`))}, "name"},
		{"property empty list", "[x:a = 1]", ts, []Option{WithProperty("labels", json.RawMessage(`[]`))}, "labels"},
		{"bad _hex", "[x:a = 1]", ts, []Option{WithProperty("x_magic_hex", json.RawMessage(`"xyz"`))}, "x_magic_hex"},
		{"bad _bin", "[x:a = 1]", ts, []Option{WithProperty("x_payload_bin", json.RawMessage(`"abc"`))}, "x_payload_bin"},
		{"bad update", "[x:a = 1]", ts, []Option{WithUpdate("DELETE")}, "x_threatbus_update"},
	}
	for _, tc := range tests {
		_, err := NewIndicator(tc.pattern, tc.from, tc.opts...)
		wantFieldError(t, tc.name, err, tc.field)
	}
	for _, opt := range []Option{WithMatchType(MatchLive), WithSource("zeek"), WithContext(json.RawMessage(`{}`)),
		WithFirstSeen(ts), WithCount(1), WithIndicatorValue("x"), WithSightedIndicator(json.RawMessage(`{}`))} {
		if _, err := NewIndicator("[x:a = 1]", ts, opt); err == nil || !strings.Contains(err.Error(), "does not apply to indicator objects") {
			t.Errorf("sighting option on an indicator: %v", err)
		}
	}
}
