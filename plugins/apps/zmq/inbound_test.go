package zmq

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const stixData = "../../../../shared/testdata/stix"

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stixData, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A valid indicator to mutate: every property the spec's drop list talks
// about, and a large integer that must survive.
const goodIndicator = `{"type": "indicator", "spec_version": "2.1", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-01-15T15:29:05.000Z", "modified": "2021-01-15T15:29:05.000Z", "pattern": "[domain-name:value = 'example.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-01-15T15:29:05.000Z", "x_big": 1700000000123456789}`

// mutate replaces old by new in goodIndicator, failing if old is absent.
func mutate(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(goodIndicator, old) {
		t.Fatalf("%q not in the sample indicator", old)
	}
	return strings.Replace(goodIndicator, old, new, 1)
}

// dropCases is the spec's list of inbound frames that must be dropped, with
// the cause each is counted under. Tests over real sockets reuse it.
func dropCases(t *testing.T) []struct{ name, frame, cause string } {
	identity := `{"type": "identity", "spec_version": "2.1", "id": "identity--f690c992-8e7d-4b9a-9303-3312616c0220", "created": "2016-08-08T15:50:10.983Z", "modified": "2016-08-08T15:50:10.983Z", "name": "MITRE", "identity_class": "organization"}`
	custom := `{"type": "x-acme-widget", "spec_version": "2.1", "id": "x-acme-widget--f690c992-8e7d-4b9a-9303-3312616c0220", "created": "2016-08-08T15:50:10.983Z", "modified": "2016-08-08T15:50:10.983Z"}`
	request := strings.TrimSpace(string(testdata(t, "snapshotrequest.json")))
	return []struct{ name, frame, cause string }{
		{"not JSON", "stix2/indicator hello", causeMalformedJSON},
		{"truncated JSON", "stix2/indicator " + goodIndicator[:60], causeMalformedJSON},
		{"no payload", "stix2/indicator", causeNoPayload},
		{"empty payload", "stix2/indicator ", causeNoPayload},
		{"blank payload", "stix2/indicator  \n", causeNoPayload},
		{"invalid UTF-8", "stix2/indicator " + mutate(t, "example.com", "exa\xffmple.com"), causeInvalidUTF8},
		{"JSON array", "stix2/indicator [" + goodIndicator + "]", causeMalformedJSON},
		{"empty object", "stix2/indicator {}", causeNoType},
		{"type not a string", `stix2/indicator {"type": 1}`, causeNoType},
		{"identity", "stix2/indicator " + identity, causeUnsupportedType},
		{"custom object", "stix2/indicator " + custom, causeUnsupportedType},
		{"snapshot request on stix2/", "stix2/indicator " + request, causeUnsupportedType},
		{"invalid pattern", "stix2/indicator " + mutate(t, `[domain-name:value = 'example.com']`, `[domain-name:value = ]`), causeIndicator},
		{"missing pattern", "stix2/indicator " + mutate(t, `"pattern": "[domain-name:value = 'example.com']", `, ``), causeIndicator},
		{"missing pattern_type", "stix2/indicator " + mutate(t, `"pattern_type": "stix", `, ``), causeIndicator},
		{"id without UUID", "stix2/indicator " + mutate(t, `indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb`, `indicator--1234`), causeIndicator},
		{"id of another type", "stix2/indicator " + mutate(t, `indicator--42d31a5b`, `malware--42d31a5b`), causeIndicator},
		{"STIX 2.0", "stix2/indicator " + mutate(t, `"spec_version": "2.1", `, ``), causeIndicator},
		{"offset instead of Z", "stix2/indicator " + mutate(t, `"created": "2021-01-15T15:29:05.000Z"`, `"created": "2021-01-15T15:29:05.000+00:00"`), causeTimestamp},
		{"offset in valid_from", "stix2/indicator " + mutate(t, `"valid_from": "2021-01-15T15:29:05.000Z"`, `"valid_from": "2021-01-15T15:29:05+00:00"`), causeTimestamp},
		{"seven fraction digits", "stix2/indicator " + mutate(t, `"modified": "2021-01-15T15:29:05.000Z"`, `"modified": "2021-01-15T15:29:05.0000001Z"`), causeTimestamp},
		{"escaped key with offset", "stix2/indicator " + mutate(t, `"created": "2021-01-15T15:29:05.000Z"`, `"cr\u0065ated": "2021-01-15T15:29:05.000+00:00"`), causeTimestamp},
		{"topic foo/bar", "foo/bar " + goodIndicator, causeTopic},
		{"topic STIX2/indicator", "STIX2/indicator " + goodIndicator, causeTopic},
		{"bare stix2", "stix2 " + goodIndicator, causeTopic},
		{"envelope topic with a suffix", "threatbus/snapshotenvelopes " + goodIndicator, causeTopic},
		{"indicator on the envelope topic", "threatbus/snapshotenvelope " + goodIndicator, causeUnsupportedType},
		{"envelope with an invalid body", `threatbus/snapshotenvelope {"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "x", "body": ` + mutate(t, `"pattern_type": "stix", `, ``) + `}`, causeEnvelope},
		{"envelope whose body has an offset", `threatbus/snapshotenvelope {"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "x", "body": ` + mutate(t, `"modified": "2021-01-15T15:29:05.000Z"`, `"modified": "2021-01-15T15:29:05.000+00:00"`) + `}`, causeEnvelope},
		{"envelope of the wrong type", `threatbus/snapshotenvelope {"type": "snapshotenvelope", "snapshot_type": 2, "snapshot_id": "x", "body": ` + goodIndicator + `}`, causeEnvelope},
		{"envelope without body", `threatbus/snapshotenvelope {"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "x"}`, causeEnvelope},
	}
}

func TestDecodeFrameDrops(t *testing.T) {
	for _, c := range dropCases(t) {
		if _, rej := decodeFrame([]byte(c.frame)); rej == nil || rej.cause != c.cause {
			t.Errorf("%s: got %v, want cause %s", c.name, rej, c.cause)
		}
	}
}

func TestDecodeFrameAccepts(t *testing.T) {
	for _, c := range []struct{ topic, file, typ string }{
		{"stix2/indicator", "indicator-domain.json", "indicator"},
		{"stix2/indicator", "indicator-opencti-style.json", "indicator"},
		{"stix2/indicator", "indicator-remove.json", "indicator"},
		{"stix2/sighting", "sighting-vast-retro.json", "sighting"},
		{"stix2/sighting", "sighting-zeek.json", "sighting"},
		// Routed by type, not by the topic text.
		{"stix2/sighting", "indicator-domain.json", "indicator"},
		{"stix2/", "sighting-zeek.json", "sighting"},
		{"threatbus/snapshotenvelope", "snapshotenvelope-indicator.json", "snapshotenvelope"},
	} {
		payload := testdata(t, c.file)
		msg, rej := decodeFrame(append([]byte(c.topic+" "), payload...))
		if rej != nil {
			t.Errorf("%s on %s: %v", c.file, c.topic, rej)
			continue
		}
		if msg.typ != c.typ || !bytes.Equal(msg.payload, payload) {
			t.Errorf("%s: got %s %q", c.file, msg.typ, msg.payload)
		}
		if c.typ == "snapshotenvelope" && msg.snapshotID != "SNAPSHOT_UUID" {
			t.Errorf("%s: snapshot id %q", c.file, msg.snapshotID)
		}
	}
	// Six fraction digits, lower-case z, no fraction, and the bundles'
	// indicators as their authors wrote them.
	for _, ind := range []string{
		goodIndicator,
		mutate(t, `"modified": "2021-01-15T15:29:05.000Z"`, `"modified": "2021-01-15T15:29:05.123456Z"`),
		mutate(t, `"created": "2021-01-15T15:29:05.000Z"`, `"created": "2021-01-15T15:29:05Z"`),
		mutate(t, `"created": "2021-01-15T15:29:05.000Z"`, `"created": "2021-01-15t15:29:05.000z"`),
	} {
		if _, rej := decodeFrame([]byte("stix2/indicator " + ind)); rej != nil {
			t.Errorf("%s: %v", ind, rej)
		}
	}
	for _, obj := range bundleObjects(t, "bundle-indicator-c2-ip.json", "bundle-malicious-email.json") {
		_, rej := decodeFrame(append([]byte("stix2/indicator "), obj...))
		typ := objectType(t, obj)
		switch {
		case typ == "indicator" && rej != nil:
			t.Errorf("bundle indicator refused: %v\n%s", rej, obj)
		case typ != "indicator" && (rej == nil || rej.cause != causeUnsupportedType):
			t.Errorf("bundle %s: got %v, want %s", typ, rej, causeUnsupportedType)
		}
	}
}

// bundleObjects returns the objects of STIX bundles, each as the exact
// bytes it has in its file.
func bundleObjects(t testing.TB, files ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range files {
		var b struct {
			Objects []json.RawMessage `json:"objects"`
		}
		if err := json.Unmarshal(testdata(t, f), &b); err != nil {
			t.Fatal(err)
		}
		for _, o := range b.Objects {
			out = append(out, []byte(o))
		}
	}
	return out
}

func objectType(t testing.TB, obj []byte) string {
	t.Helper()
	var v struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(obj, &v); err != nil {
		t.Fatal(err)
	}
	return v.Type
}

func TestCheckTimestampsIgnoresNested(t *testing.T) {
	// Only the object's own timestamps follow the STIX form; what a sighting
	// carries as context is the sensor's business.
	s := `{"type": "sighting", "spec_version": "2.1", "id": "sighting--0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "created": "2021-03-01T12:00:05.200Z", "modified": "2021-03-01T12:00:05.200Z", "sighting_of_ref": "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "x_threatbus_sighting_context": {"created": "2021-03-01T12:00:05+01:00", "ts": "2017-03-03T23:56:09.652643840Z"}}`
	if _, rej := decodeFrame([]byte("stix2/sighting " + s)); rej != nil {
		t.Fatal(rej)
	}
}

// TestCheckTimestampsStrings: keys and quotes inside strings, and escaped
// backslashes before a quote, do not confuse the member scanner.
func TestCheckTimestampsStrings(t *testing.T) {
	tricky := mutate(t, `"x_big": 1700000000123456789`,
		`"description": "not a key: \", \"created\": \"2021-01-15T15:29:05+00:00\", \\\\", "x_path": "C:\\\\", "x_obj": {"created": "x\"}", "l": ["}", "\\"]}, "x_big": 1700000000123456789`)
	if _, rej := decodeFrame([]byte("stix2/indicator " + tricky)); rej != nil {
		t.Fatalf("%v\n%s", rej, tricky)
	}
	bad := strings.Replace(tricky, `"valid_from": "2021-01-15T15:29:05.000Z"`, `"valid_from": "2021-01-15T15:29:05.000-01:00"`, 1)
	if _, rej := decodeFrame([]byte("stix2/indicator " + bad)); rej == nil || rej.cause != causeTimestamp {
		t.Fatalf("got %v, want %s", rej, causeTimestamp)
	}
}
