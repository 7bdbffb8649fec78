package stix

import (
	"errors"
	"strings"
	"testing"
)

// props is an ordered JSON object for building test messages by mutation.
type props [][2]string

func (p props) with(k, raw string) props {
	out := make(props, 0, len(p)+1)
	done := false
	for _, kv := range p {
		if kv[0] == k {
			kv[1], done = raw, true
		}
		out = append(out, kv)
	}
	if !done {
		out = append(out, [2]string{k, raw})
	}
	return out
}

// plus appends even if k is present, to build duplicate properties.
func (p props) plus(k, raw string) props {
	return append(append(props{}, p...), [2]string{k, raw})
}

func (p props) without(k string) props {
	out := make(props, 0, len(p))
	for _, kv := range p {
		if kv[0] != k {
			out = append(out, kv)
		}
	}
	return out
}

func (p props) json() []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i, kv := range p {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + kv[0] + `":` + kv[1])
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// wantFieldError checks that err is a FieldError naming field, in its
// struct and in its text.
func wantFieldError(t *testing.T, what string, err error, field string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("%s: err = %v, want a FieldError for %q", what, err, field)
		return
	}
	if fe.Field != field || !strings.Contains(err.Error(), `"`+field+`"`) {
		t.Errorf("%s: err = %v (field %q), want field %q", what, err, fe.Field, field)
	}
}

func TestDecodeDispatch(t *testing.T) {
	files := map[string]string{
		"stix/indicator-domain.json":           "*stix.Indicator",
		"stix/sighting-zeek.json":              "*stix.Sighting",
		"stix/snapshotrequest.json":            "*stix.SnapshotRequest",
		"stix/snapshotenvelope-indicator.json": "*stix.SnapshotEnvelope",
	}
	for file, want := range files {
		b := readTestdata(t, file)
		m, err := Decode(b)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if got := typeName(m); got != want || string(m.Bytes()) != string(b) {
			t.Errorf("%s: Decode = %s, want %s with the original bytes", file, got, want)
		}
		if topic, err := TopicFor(m.MessageType()); err != nil || topic == "" {
			t.Errorf("%s: no topic: %v", file, err)
		}
	}
	if _, err := Decode([]byte(`{"type":"malware","id":"malware--1"}`)); !errors.Is(err, ErrUnknownType) {
		t.Errorf("Decode(malware) err = %v, want ErrUnknownType", err)
	}
	if _, err := Decode([]byte(`{"type":`)); !errors.Is(err, ErrMalformedJSON) {
		t.Errorf("Decode(truncated) err = %v, want ErrMalformedJSON", err)
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *Indicator:
		return "*stix.Indicator"
	case *Sighting:
		return "*stix.Sighting"
	case *SnapshotRequest:
		return "*stix.SnapshotRequest"
	case *SnapshotEnvelope:
		return "*stix.SnapshotEnvelope"
	}
	return "?"
}

func TestIdentifiers(t *testing.T) {
	good := []string{
		"indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb",
		"indicator--42D31A5B-2DA0-1BDD-B823-1723A98FC2FB", // v1, upper case
		"indicator--42d31a5b-2da0-5bdd-a823-1723a98fc2fb", // v5
	}
	for _, id := range good {
		if err := checkIdentifier(id, "indicator"); err != nil {
			t.Errorf("checkIdentifier(%q): %v", id, err)
		}
	}
	bad := []string{
		"indicator--42d31a5b-2da0-6bdd-9823-1723a98fc2fb", // v6
		"indicator--42d31a5b-2da0-0bdd-9823-1723a98fc2fb", // v0
		"indicator--42d31a5b-2da0-4bdd-c823-1723a98fc2fb", // wrong variant
		"indicator--42d31a5b2da04bdd98231723a98fc2fb",
		"indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fg",
		"indicator-42d31a5b-2da0-4bdd-9823-1723a98fc2fb",
		"sighting--42d31a5b-2da0-4bdd-9823-1723a98fc2fb",
		"--42d31a5b-2da0-4bdd-9823-1723a98fc2fb",
		"",
	}
	for _, id := range bad {
		if err := checkIdentifier(id, "indicator"); err == nil {
			t.Errorf("checkIdentifier(%q) accepted", id)
		}
	}
	for _, typ := range []string{"Indicator", "ab", "x--y", "-ab", "ab-", "a_b"} {
		if validObjectType(typ) {
			t.Errorf("validObjectType(%q) = true", typ)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	good := map[string]string{
		"2021-01-15T15:29:05Z":             "2021-01-15T15:29:05.000Z",
		"2021-01-15T15:29:05.1Z":           "2021-01-15T15:29:05.100Z",
		"2014-05-08T09:00:00.000000Z":      "2014-05-08T09:00:00.000Z",
		"2021-01-15T16:29:05.123456+01:00": "2021-01-15T15:29:05.123Z",
		"2021-01-15t10:29:05-05:00":        "2021-01-15T15:29:05.000Z",
		"2021-01-15T15:29:05z":             "2021-01-15T15:29:05.000Z",
		"2024-02-29T00:00:00Z":             "2024-02-29T00:00:00.000Z",
		"2016-12-31T23:59:60Z":             "2017-01-01T00:00:00.000Z",
	}
	for in, want := range good {
		ts, err := ParseTimestamp(in)
		if err != nil || FormatTimestamp(ts) != want {
			t.Errorf("ParseTimestamp(%q) = %s, %v; want %s", in, FormatTimestamp(ts), err, want)
		}
	}
	for _, in := range []string{
		"2021-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2021-04-31T00:00:00Z", "2021-13-01T00:00:00Z",
		"2021-01-15T24:00:00Z", "2021-01-15T15:29:05", "2021-01-15 15:29:05Z", "2021-01-15T15:29:05.Z",
		"2021-01-15T15:29:05+0100", "2021-01-15T15:29:05+24:00", "2021-01-15T15:29:05ZZ", "21-01-15T15:29:05Z",
		"2021-01-15T15:29:05,123Z", "",
	} {
		if ts, err := ParseTimestamp(in); err == nil {
			t.Errorf("ParseTimestamp(%q) = %v, want an error", in, ts)
		}
	}
}
