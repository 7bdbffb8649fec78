package stix

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

const snapID = "8a5e3c2b-1f0d-4e6a-9b7c-2d4f6a8b0c1e"

func TestNewSnapshotRequestExact(t *testing.T) {
	// The test vector, byte for byte (the original's json.dumps).
	r, err := NewSnapshotRequest(SnapshotSightings, "SNAPSHOT_UUID", 3712417*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.TrimSpace(readTestdata(t, "stix/snapshotrequest.json")); !bytes.Equal(r.Raw, want) {
		t.Errorf("got  %s\nwant %s", r.Raw, want)
	}
	if r.SnapshotType != SnapshotSightings || r.SnapshotID != "SNAPSHOT_UUID" || r.Window != 3712417*time.Second {
		t.Errorf("%+v", r)
	}
	s, err := NewSnapshotRequest(SnapshotIndicators, snapID, time.Hour)
	if err != nil || !bytes.Contains(s.Raw, []byte(`"snapshot_type": 1,`)) || !bytes.HasSuffix(s.Raw, []byte(`"snapshot": 3600}`)) {
		t.Errorf("%s %v", s.Raw, err)
	}
	for _, tc := range []struct {
		typ    SnapshotType
		id     string
		window time.Duration
		field  string
	}{
		{0, snapID, time.Hour, "snapshot_type"},
		{3, snapID, time.Hour, "snapshot_type"},
		{SnapshotIndicators, "", time.Hour, "snapshot_id"},
		{SnapshotIndicators, snapID, 0, "snapshot"},
		{SnapshotIndicators, snapID, -time.Second, "snapshot"},
		{SnapshotIndicators, snapID, 1500 * time.Millisecond, "snapshot"},
		{SnapshotIndicators, snapID, time.Millisecond, "snapshot"},
	} {
		_, err := NewSnapshotRequest(tc.typ, tc.id, tc.window)
		wantFieldError(t, tc.field, err, tc.field)
	}
}

func TestNewSnapshotEnvelopeExact(t *testing.T) {
	// The test vector, byte for byte: its body wrapped again is the file.
	vector := bytes.TrimSpace(readTestdata(t, "stix/snapshotenvelope-indicator.json"))
	i := bytes.Index(vector, []byte(`"body": `))
	if i < 0 {
		t.Fatal("test vector without body")
	}
	v, err := NewSnapshotEnvelope(SnapshotIndicators, "SNAPSHOT_UUID", vector[i+len(`"body": `):len(vector)-1])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.Raw, vector) {
		t.Errorf("got  %s\nwant %s", v.Raw, vector)
	}
	body := readTestdata(t, "stix/indicator-opencti-style.json")
	e, err := NewSnapshotEnvelope(SnapshotIndicators, snapID, body)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "` + snapID + `", "body": ` + string(bytes.TrimSpace(body)) + `}`
	if string(e.Raw) != want {
		t.Errorf("got  %s\nwant %s", e.Raw, want)
	}
	if !bytes.Equal(e.Body, bytes.TrimSpace(body)) {
		t.Error("Body is not the embedded object")
	}
	// Unwrapping gives the subscriber the very object that was wrapped.
	ind, err := DecodeIndicator(e.Body)
	if err != nil || ind.ID != "indicator--c8f0a6a4-4b0e-4f4e-9a7c-2d1f6b3e9a10" {
		t.Errorf("body: %v %v", ind, err)
	}
	sighting := readTestdata(t, "stix/sighting-zeek.json")
	if _, err := NewSnapshotEnvelope(SnapshotSightings, snapID, sighting); err != nil {
		t.Errorf("sighting envelope: %v", err)
	}
	for _, tc := range []struct {
		name  string
		typ   SnapshotType
		id    string
		body  string
		field string
	}{
		{"type", 7, snapID, string(body), "snapshot_type"},
		{"id", SnapshotIndicators, "", string(body), "snapshot_id"},
		{"empty body", SnapshotIndicators, snapID, "  ", "body"},
		{"string body", SnapshotIndicators, snapID, `"{\"type\":\"indicator\"}"`, "body"},
		{"body type mismatch", SnapshotSightings, snapID, string(body), "body"},
		{"body without type", SnapshotIndicators, snapID, `{"id":"x"}`, "body"},
		{"body not JSON", SnapshotIndicators, snapID, `{"type":"indicator"`, "body"},
	} {
		_, err := NewSnapshotEnvelope(tc.typ, tc.id, []byte(tc.body))
		wantFieldError(t, tc.name, err, tc.field)
	}
}

func TestDecodeSnapshotTestdata(t *testing.T) {
	r, err := DecodeSnapshotRequest(readTestdata(t, "stix/snapshotrequest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if r.SnapshotType != SnapshotSightings || r.SnapshotID != "SNAPSHOT_UUID" || r.Window != 3712417*time.Second {
		t.Errorf("%+v", r)
	}
	b := readTestdata(t, "stix/snapshotenvelope-indicator.json")
	e, err := DecodeSnapshotEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.SnapshotType != SnapshotIndicators || e.SnapshotID != "SNAPSHOT_UUID" || e.Body[0] != '{' || !bytes.Contains(b, e.Body) {
		t.Errorf("%+v", e)
	}
	if ind, err := DecodeIndicator(e.Body); err != nil || ind.ID != "indicator--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc" {
		t.Errorf("body: %v %v", ind, err)
	}
}

func TestDecodeSnapshotRejects(t *testing.T) {
	req := props{{"type", `"snapshotrequest"`}, {"snapshot_type", `1`}, {"snapshot_id", `"x"`}, {"snapshot", `60`}}
	for _, tc := range []struct {
		name  string
		in    props
		field string
	}{
		{"type", req.with("type", `"snapshotenvelope"`), "type"},
		{"snapshot_type missing", req.without("snapshot_type"), "snapshot_type"},
		{"snapshot_type 3", req.with("snapshot_type", `3`), "snapshot_type"},
		{"snapshot_type string", req.with("snapshot_type", `"1"`), "snapshot_type"},
		{"snapshot_type float", req.with("snapshot_type", `1.0`), "snapshot_type"},
		{"snapshot_id missing", req.without("snapshot_id"), "snapshot_id"},
		{"snapshot_id empty", req.with("snapshot_id", `""`), "snapshot_id"},
		{"snapshot_id number", req.with("snapshot_id", `5`), "snapshot_id"},
		{"snapshot missing", req.without("snapshot"), "snapshot"},
		{"snapshot zero", req.with("snapshot", `0`), "snapshot"},
		{"snapshot negative", req.with("snapshot", `-5`), "snapshot"},
		{"snapshot fraction", req.with("snapshot", `1.5`), "snapshot"},
		{"snapshot exponent", req.with("snapshot", `1e3`), "snapshot"},
		{"snapshot string", req.with("snapshot", `"60"`), "snapshot"},
		{"snapshot overflow", req.with("snapshot", `9223372036854775807`), "snapshot"},
		{"snapshot duplicated", req.plus("snapshot", `61`), "snapshot"},
	} {
		_, err := DecodeSnapshotRequest(tc.in.json())
		wantFieldError(t, tc.name, err, tc.field)
	}
	ind := string(readTestdata(t, "stix/indicator-domain.json"))
	env := props{{"type", `"snapshotenvelope"`}, {"snapshot_type", `1`}, {"snapshot_id", `"x"`}, {"body", ind}}
	if _, err := DecodeSnapshotEnvelope(env.json()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		in    props
		field string
	}{
		{"body missing", env.without("body"), "body"},
		{"body string", env.with("body", `"{}"`), "body"},
		{"body array", env.with("body", `[]`), "body"},
		{"body wrong type", env.with("snapshot_type", `2`), "body"},
		{"snapshot_id missing", env.without("snapshot_id"), "snapshot_id"},
	} {
		_, err := DecodeSnapshotEnvelope(tc.in.json())
		wantFieldError(t, tc.name, err, tc.field)
	}
	if _, err := DecodeSnapshotEnvelope([]byte(`{"type":"snapshotenvelope"`)); !errors.Is(err, ErrMalformedJSON) {
		t.Errorf("truncated envelope: %v", err)
	}
}

func TestSnapshotType(t *testing.T) {
	if SnapshotIndicators != 1 || SnapshotSightings != 2 {
		t.Fatal("wire numbers changed")
	}
	if SnapshotIndicators.ObjectType() != TypeIndicator || SnapshotSightings.ObjectType() != TypeSighting || SnapshotType(3).ObjectType() != "" {
		t.Error("ObjectType")
	}
	if SnapshotIndicators.String() != "indicators" || SnapshotType(9).String() != "SnapshotType(9)" {
		t.Error("String")
	}
}
