package zmq

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/threatbus/threatbus/messages/stix"
)

// stixFiles returns the single-object files of the shared test data.
func stixFiles(f *testing.F) map[string][]byte {
	f.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(stixData)
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".json" {
			out[e.Name()] = testdata(f, e.Name())
		}
	}
	return out
}

// FuzzDecodeRequest: whatever arrives on the manage socket gets exactly one
// of the three statuses, and an actionable request is well-formed.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"action":"subscribe","topic":"stix2/indicator","snapshot":30}`,
		`{"action":"subscribe","topic":["stix2/indicator","stix2/sighting"],"snapshot":"5"}`,
		`{"action":"heartbeat","topic":"abcdefghijklmnopqrstuvwxyzabcdef"}`,
		`{"action":"unsubscribe","topic":["x"]}`,
		`{"action":"SUBSCRIBE","topic":""}`,
		`{"snapshot":" +1_000 "}`, `{"snapshot":-1e308}`, `{"snapshot":true,"topic":{},"action":null}`,
		`{}`, `[]`, `null`, `"x"`, ``, "\xff", `{"action":"subscribe","topic":"x"`,
	} {
		f.Add([]byte(s))
	}
	for _, b := range stixFiles(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, status := decodeRequest(b)
		switch status {
		case statusError, statusUnknown:
			return
		case "":
		default:
			t.Fatalf("status %q", status)
		}
		if !json.Valid(b) || !utf8.Valid(b) {
			t.Fatalf("acted on a request that is not JSON: %q", b)
		}
		if req.snapshot < 0 {
			t.Fatalf("negative snapshot %v", req.snapshot)
		}
		switch req.action {
		case actionSubscribe:
			if len(req.topics) == 0 {
				t.Fatal("subscribe without topics")
			}
		case actionUnsubscribe, actionHeartbeat:
			if len(req.topics) != 1 || req.topics[0] == "" {
				t.Fatalf("%s with topics %q", req.action, req.topics)
			}
		default:
			t.Fatalf("action %q", req.action)
		}
	})
}

// FuzzDecodeFrame: whatever apps publish is either refused with a known
// cause or is a valid indicator, sighting or envelope whose bytes are the
// frame's, unchanged.
func FuzzDecodeFrame(f *testing.F) {
	for name, b := range stixFiles(f) {
		switch {
		case strings.HasPrefix(name, "snapshotenvelope"):
			f.Add(append([]byte("threatbus/snapshotenvelope "), b...))
		default:
			f.Add(append([]byte("stix2/indicator "), b...))
		}
	}
	f.Add([]byte("stix2/indicator " + goodIndicator))
	f.Add([]byte("stix2/sighting {}"))
	f.Add([]byte("stix2/indicator"))
	f.Add([]byte("foo/bar {\"type\": \"indicator\"}"))
	causes := map[string]bool{}
	for _, c := range []string{causeInvalidUTF8, causeNoPayload, causeTopic, causeMalformedJSON, causeNoType,
		causeUnsupportedType, causeIndicator, causeSighting, causeEnvelope, causeTimestamp} {
		causes[c] = true
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		// The one-pass fast path accepts exactly the indicators and
		// sightings the step-by-step checks accept, with the same result.
		fast, ok := decodeFrameFast(frame)
		steps, stepsRej := decodeFrameSteps(frame)
		switch {
		case ok && (stepsRej != nil || !bytes.Equal(fast.payload, steps.payload) || fast.typ != steps.typ || steps.snapshotID != ""):
			t.Fatalf("fast path accepted %q as %+v; step by step: %+v, %v", frame, fast, steps, stepsRej)
		case !ok && stepsRej == nil && bytes.HasPrefix(frame, []byte(topicSTIXPrefix)):
			t.Fatalf("fast path refused %q, which the step-by-step checks accept", frame)
		}
		msg, rej := decodeFrame(frame)
		if rej != nil {
			if !causes[rej.cause] || rej.err == nil {
				t.Fatalf("rejection %q (%v)", rej.cause, rej.err)
			}
			return
		}
		if !utf8.Valid(frame) || !bytes.HasSuffix(frame, msg.payload) || len(msg.payload) >= len(frame) || frame[len(frame)-len(msg.payload)-1] != ' ' {
			t.Fatalf("payload %q is not what followed the first space of %q", msg.payload, frame)
		}
		topic := string(frame[:bytes.IndexByte(frame, ' ')])
		m, err := stix.Decode(msg.payload)
		if err != nil {
			t.Fatalf("accepted %q: %v", frame, err)
		}
		switch msg.typ {
		case "indicator", "sighting":
			if !strings.HasPrefix(topic, "stix2/") {
				t.Fatalf("a %s on topic %q", msg.typ, topic)
			}
		case "snapshotenvelope":
			if topic != "threatbus/snapshotenvelope" || msg.snapshotID == "" {
				t.Fatalf("an envelope on %q with id %q", topic, msg.snapshotID)
			}
		default:
			t.Fatalf("accepted type %q", msg.typ)
		}
		if m.MessageType() != msg.typ {
			t.Fatalf("type %q, decoded as %q", msg.typ, m.MessageType())
		}
	})
}
