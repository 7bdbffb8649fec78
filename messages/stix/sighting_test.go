package stix

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var baseSighting = props{
	{"type", `"sighting"`},
	{"spec_version", `"2.1"`},
	{"id", `"sighting--0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"`},
	{"created", `"2021-03-01T12:00:05.200Z"`},
	{"modified", `"2021-03-01T12:00:05.200Z"`},
	{"last_seen", `"2021-03-01T12:00:05.123Z"`},
	{"sighting_of_ref", `"indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06"`},
}

func TestDecodeSighting(t *testing.T) {
	b := readTestdata(t, "stix/sighting-zeek.json")
	s, err := DecodeSighting(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "sighting--0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9" || s.SightingOfRef != "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06" ||
		!s.LastSeen.Equal(time.Date(2021, 3, 1, 12, 0, 5, 123e6, time.UTC)) || !s.FirstSeen.IsZero() || s.Count != -1 ||
		s.Source != "zeek" || s.MatchType != MatchNone || s.Indicator != nil || s.HasIndicatorValue ||
		string(s.Context) != `{"noisy": false}` {
		t.Errorf("decoded %+v", s)
	}
	if &s.Raw[0] != &b[0] {
		t.Error("Raw is not the decoded slice")
	}

	b = readTestdata(t, "stix/sighting-vast-retro.json")
	s, err = DecodeSighting(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.MatchType != MatchRetro || s.Source != "VAST" || !bytes.HasPrefix(s.Context, []byte(`{"ts": "2017-03-03T23:56:09.652643840"`)) ||
		!bytes.HasSuffix(s.Context, []byte(`"_extra": {"vast-ioc": "172.31.129.17"}}`)) {
		t.Errorf("decoded %+v", s)
	}
	// The context is a window on the message, byte for byte.
	if !bytes.Contains(b, s.Context) || !json.Valid(s.Context) {
		t.Error("context is not the original bytes")
	}
	if _, err := s.SightedIndicator(); err == nil {
		t.Error("SightedIndicator without x_threatbus_indicator succeeded")
	}
}

func TestSightingThreatBusProperties(t *testing.T) {
	ind := strings.TrimSpace(string(readTestdata(t, "stix/indicator-domain.json")))
	p := baseSighting.
		with("x_threatbus_indicator", ind).
		with("x_threatbus_indicator_value", `"example.com"`).
		with("x_threatbus_match_type", `"LIVE"`).
		with("x_threatbus_source", `"suricata"`).
		with("x_threatbus_sighting_context", `[1, "two", {"three": null}]`).
		with("first_seen", `"2021-03-01T12:00:00Z"`).
		with("count", `3`)
	s, err := DecodeSighting(p.json())
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Indicator) != ind || s.IndicatorValue != "example.com" || !s.HasIndicatorValue || s.MatchType != MatchLive ||
		s.Source != "suricata" || string(s.Context) != `[1, "two", {"three": null}]` || s.Count != 3 || s.FirstSeen.IsZero() {
		t.Errorf("decoded %+v", s)
	}
	sighted, err := s.SightedIndicator()
	if err != nil || sighted.ID != indicatorID {
		t.Errorf("SightedIndicator = %+v, %v", sighted, err)
	}
	for _, ctx := range []string{`null`, `"text"`, `42`, `{}`} {
		s, err := DecodeSighting(baseSighting.with("x_threatbus_sighting_context", ctx).json())
		if err != nil || string(s.Context) != ctx {
			t.Errorf("context %s: %v", ctx, err)
		}
	}
	bad := baseSighting.with("x_threatbus_indicator", `{"type":"indicator"}`)
	s, err = DecodeSighting(bad.json())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.SightedIndicator()
	wantFieldError(t, "broken embedded indicator", err, "x_threatbus_indicator")
}

func TestDecodeSightingRejects(t *testing.T) {
	tests := []struct {
		name  string
		in    props
		field string
	}{
		{"type indicator", baseSighting.with("type", `"indicator"`), "type"},
		{"id of other type", baseSighting.with("id", `"indicator--0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"`), "id"},
		{"created missing", baseSighting.without("created"), "created"},
		{"sighting_of_ref missing", baseSighting.without("sighting_of_ref"), "sighting_of_ref"},
		{"sighting_of_ref not an id", baseSighting.with("sighting_of_ref", `"example.com"`), "sighting_of_ref"},
		{"sighting_of_ref a sighting", baseSighting.with("sighting_of_ref", `"sighting--0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"`), "sighting_of_ref"},
		{"sighting_of_ref a relationship", baseSighting.with("sighting_of_ref", `"relationship--0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"`), "sighting_of_ref"},
		{"sighting_of_ref object", baseSighting.with("sighting_of_ref", `{"id":"x"}`), "sighting_of_ref"},
		{"last_seen invalid", baseSighting.with("last_seen", `"2021-03-01"`), "last_seen"},
		{"last_seen before first_seen", baseSighting.with("first_seen", `"2021-03-02T00:00:00Z"`), "last_seen"},
		{"first_seen number", baseSighting.with("first_seen", `0`), "first_seen"},
		{"count negative", baseSighting.with("count", `-1`), "count"},
		{"count too large", baseSighting.with("count", `1000000000`), "count"},
		{"count fraction", baseSighting.with("count", `1.5`), "count"},
		{"count string", baseSighting.with("count", `"1"`), "count"},
		{"indicator not object", baseSighting.with("x_threatbus_indicator", `"indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06"`), "x_threatbus_indicator"},
		{"indicator value not string", baseSighting.with("x_threatbus_indicator_value", `6`), "x_threatbus_indicator_value"},
		{"match type unknown", baseSighting.with("x_threatbus_match_type", `"LATER"`), "x_threatbus_match_type"},
		{"match type lower case", baseSighting.with("x_threatbus_match_type", `"live"`), "x_threatbus_match_type"},
		{"source not string", baseSighting.with("x_threatbus_source", `["zeek"]`), "x_threatbus_source"},
		{"context duplicated", baseSighting.plus("x_threatbus_sighting_context", `1`).plus("x_threatbus_sighting_context", `2`), "x_threatbus_sighting_context"},
	}
	for _, tc := range tests {
		_, err := DecodeSighting(tc.in.json())
		wantFieldError(t, tc.name, err, tc.field)
	}
}

func TestNewSighting(t *testing.T) {
	created := time.Date(2021, 3, 1, 12, 0, 5, 200e6, time.UTC)
	seen := time.Date(2021, 3, 1, 12, 0, 5, 123456e3, time.UTC)
	s, err := NewSighting("indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06", seen,
		WithID("sighting--0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"), WithCreated(created),
		WithSource("zeek"), WithContext(json.RawMessage(`{ "noisy": false }`)))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"sighting","spec_version":"2.1","id":"sighting--0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",` +
		`"created":"2021-03-01T12:00:05.200Z","modified":"2021-03-01T12:00:05.200Z",` +
		`"sighting_of_ref":"indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06","last_seen":"2021-03-01T12:00:05.123Z",` +
		`"x_threatbus_source":"zeek","x_threatbus_sighting_context":{"noisy":false}}`
	if string(s.Raw) != want {
		t.Errorf("got  %s\nwant %s", s.Raw, want)
	}

	ind := readTestdata(t, "stix/indicator-domain.json")
	full, err := NewSighting(indicatorID, seen,
		WithFirstSeen(seen.Add(-time.Minute)), WithCount(2), WithSightedIndicator(ind),
		WithIndicatorValue("example.com"), WithMatchType(MatchRetro), WithProperty("description", json.RawMessage(`"seen twice"`)))
	if err != nil {
		t.Fatal(err)
	}
	if full.Count != 2 || full.MatchType != MatchRetro || full.IndicatorValue != "example.com" || !full.HasIndicatorValue ||
		!strings.HasPrefix(full.ID, "sighting--") || !strings.Contains(string(full.Raw), `"description":"seen twice"`) {
		t.Errorf("built %s", full.Raw)
	}
	if got, err := full.SightedIndicator(); err != nil || got.ID != indicatorID {
		t.Errorf("embedded indicator: %v %v", got, err)
	}
	// An empty indicator value is still a value.
	empty, err := NewSighting(indicatorID, seen, WithIndicatorValue(""))
	if err != nil || !empty.HasIndicatorValue || !strings.Contains(string(empty.Raw), `"x_threatbus_indicator_value":""`) {
		t.Errorf("empty indicator value: %s %v", empty.Raw, err)
	}

	errs := []struct {
		name  string
		ref   string
		seen  time.Time
		opts  []Option
		field string
	}{
		{"bad ref", "example.com", seen, nil, "sighting_of_ref"},
		{"zero last_seen", indicatorID, time.Time{}, nil, "last_seen"},
		{"count", indicatorID, seen, []Option{WithCount(-1)}, "count"},
		{"match type", indicatorID, seen, []Option{WithMatchType("NOW")}, "x_threatbus_match_type"},
		{"context null", indicatorID, seen, []Option{WithContext(json.RawMessage(`null`))}, "x_threatbus_sighting_context"},
		{"context not JSON", indicatorID, seen, []Option{WithContext(json.RawMessage(`{"a"`))}, "x_threatbus_sighting_context"},
		{"indicator not JSON", indicatorID, seen, []Option{WithSightedIndicator(json.RawMessage(`nope`))}, "x_threatbus_indicator"},
		{"indicator not object", indicatorID, seen, []Option{WithSightedIndicator(json.RawMessage(`[1]`))}, "x_threatbus_indicator"},
		{"reserved", indicatorID, seen, []Option{WithProperty("x_threatbus_source", json.RawMessage(`"x"`))}, "x_threatbus_source"},
		{"first after last", indicatorID, seen, []Option{WithFirstSeen(seen.Add(time.Hour))}, "last_seen"},
	}
	for _, tc := range errs {
		_, err := NewSighting(tc.ref, tc.seen, tc.opts...)
		wantFieldError(t, tc.name, err, tc.field)
	}
	for _, opt := range []Option{WithUpdate(UpdateRemove), WithValidUntil(seen)} {
		if _, err := NewSighting(indicatorID, seen, opt); err == nil || !strings.Contains(err.Error(), "does not apply to sighting objects") {
			t.Errorf("indicator option on a sighting: %v", err)
		}
	}
}
