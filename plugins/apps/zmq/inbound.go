package zmq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/messages/stix"
)

// Causes an inbound frame is rejected for: counted per cause and logged once
// per cause (see Stats and README.md).
const (
	causeMultipart       = "multipart"        // more than one frame
	causeInvalidUTF8     = "invalid_utf8"     // the frame is not UTF-8
	causeNoPayload       = "no_payload"       // no space, or nothing after it
	causeTopic           = "topic"            // not stix2/… nor threatbus/snapshotenvelope
	causeMalformedJSON   = "malformed_json"   // not one JSON object
	causeNoType          = "no_type"          // an object without a string "type" ({} too)
	causeUnsupportedType = "unsupported_type" // identity, x-…, a snapshot message on stix2/ …
	causeIndicator       = "invalid_indicator"
	causeSighting        = "invalid_sighting"
	causeEnvelope        = "invalid_envelope"
	causeTimestamp       = "timestamp"        // an offset instead of Z, or more than 6 fraction digits
	causeUnknownSnapshot = "unknown_snapshot" // an envelope for no request this app forwarded
	causePublish         = "publish_failed"   // the bus refused it
)

// Topics an app publishes on.
const (
	topicSTIXPrefix       = "stix2/"
	topicSnapshotEnvelope = "threatbus/snapshotenvelope"
)

// rejection is why an inbound frame was dropped.
type rejection struct {
	cause string
	err   error
}

func (r *rejection) Error() string { return r.cause + ": " + r.err.Error() }

func reject(cause string, err error) *rejection { return &rejection{cause: cause, err: err} }

// inboundMsg is a frame that passed validation.
type inboundMsg struct {
	// payload is the JSON after the first space, exactly as received.
	payload []byte
	// typ is the object's type: indicator, sighting or snapshotenvelope.
	typ string
	// snapshotID is the id an envelope answers.
	snapshotID string
}

// decodeFrame validates one frame an app published on the SUB socket:
// "<topic> <json>". STIX objects are routed by their parsed type, never by
// the topic text, and validated as strictly as the original's stix2 library
// did (shared/specs/zmq-app.md lists what must be dropped). The payload is
// never re-encoded.
func decodeFrame(frame []byte) (inboundMsg, *rejection) {
	if msg, ok := decodeFrameFast(frame); ok {
		return msg, nil
	}
	return decodeFrameSteps(frame)
}

// decodeFrameSteps checks a frame step by step, for what the fast path did
// not accept: the steps name the cause.
func decodeFrameSteps(frame []byte) (inboundMsg, *rejection) {
	if !utf8.Valid(frame) {
		return inboundMsg{}, reject(causeInvalidUTF8, errors.New("frame is not valid UTF-8"))
	}
	sp := bytes.IndexByte(frame, ' ')
	if sp < 0 {
		return inboundMsg{}, reject(causeNoPayload, errors.New(`frame has no space: want "<topic> <json>"`))
	}
	topic, payload := frame[:sp], frame[sp+1:]
	if len(bytes.TrimLeft(payload, " \t\r\n")) == 0 {
		return inboundMsg{}, reject(causeNoPayload, errors.New("frame has no payload after the topic"))
	}
	switch {
	case bytes.HasPrefix(topic, []byte(topicSTIXPrefix)):
		return decodeSTIX(payload)
	case string(topic) == topicSnapshotEnvelope:
		return decodeEnvelope(payload)
	}
	return inboundMsg{}, reject(causeTopic, fmt.Errorf("topic %.64q: want stix2/… or %s", topic, topicSnapshotEnvelope))
}

// decodeFrameFast accepts the common frame, an indicator or sighting on a
// stix2/ topic, in one pass over the payload: stix.Validate checks what
// utf8.Valid, peek, the decoder in checkObject and checkTimestamps check
// one after another. A valid JSON object whose strings are valid UTF-8 is
// valid UTF-8 as a whole, so with the topic checked here it accepts exactly
// what decodeFrame's step-by-step checks accept.
func decodeFrameFast(frame []byte) (inboundMsg, bool) {
	if !bytes.HasPrefix(frame, []byte(topicSTIXPrefix)) {
		return inboundMsg{}, false
	}
	sp := bytes.IndexByte(frame, ' ')
	if sp < 0 || !utf8.Valid(frame[:sp]) {
		return inboundMsg{}, false
	}
	payload := frame[sp+1:]
	typ, err := stix.Validate(payload, stix.StrictUTF8|stix.StrictTimestamps)
	if err != nil {
		return inboundMsg{}, false
	}
	return inboundMsg{payload: payload, typ: typ}, true
}

// peek reads the type of a JSON object, classifying what is wrong with it.
func peek(payload []byte) (string, *rejection) {
	typ, _, err := stix.Peek(payload)
	if err == nil {
		return typ, nil
	}
	var fe *stix.FieldError
	if errors.As(err, &fe) && fe.Field == "type" {
		return "", reject(causeNoType, err)
	}
	return "", reject(causeMalformedJSON, err)
}

func decodeSTIX(payload []byte) (inboundMsg, *rejection) {
	typ, rej := peek(payload)
	if rej != nil {
		return inboundMsg{}, rej
	}
	if rej := checkObject(typ, payload); rej != nil {
		return inboundMsg{}, rej
	}
	return inboundMsg{payload: payload, typ: typ}, nil
}

// checkObject validates an indicator or sighting; any other type is refused.
func checkObject(typ string, b []byte) *rejection {
	var stamps []string
	switch typ {
	case messages.TypeIndicator:
		if _, err := stix.DecodeIndicator(b); err != nil {
			return reject(causeIndicator, err)
		}
		stamps = indicatorTimestamps
	case messages.TypeSighting:
		if _, err := stix.DecodeSighting(b); err != nil {
			return reject(causeSighting, err)
		}
		stamps = sightingTimestamps
	default:
		return reject(causeUnsupportedType, fmt.Errorf("type %.64q: apps publish only indicators and sightings here", typ))
	}
	if err := checkTimestamps(b, stamps); err != nil {
		return reject(causeTimestamp, err)
	}
	return nil
}

func decodeEnvelope(payload []byte) (inboundMsg, *rejection) {
	typ, rej := peek(payload)
	if rej != nil {
		return inboundMsg{}, rej
	}
	if typ != messages.TypeSnapshotEnvelope {
		return inboundMsg{}, reject(causeUnsupportedType, fmt.Errorf("type %.64q on %s", typ, topicSnapshotEnvelope))
	}
	env, err := stix.DecodeSnapshotEnvelope(payload)
	if err != nil {
		return inboundMsg{}, reject(causeEnvelope, err)
	}
	bodyType, _, _ := stix.Peek(env.Body) // checked by DecodeSnapshotEnvelope
	if rej := checkObject(bodyType, env.Body); rej != nil {
		return inboundMsg{}, reject(causeEnvelope, fmt.Errorf("body: %w", rej))
	}
	return inboundMsg{payload: payload, typ: typ, snapshotID: env.SnapshotID}, nil
}

// The timestamp properties the original's stix2 library parsed, with a
// format that takes only "Z" and at most six fraction digits (Python's %f).
var (
	indicatorTimestamps = []string{"created", "modified", "valid_from", "valid_until"}
	sightingTimestamps  = []string{"created", "modified", "first_seen", "last_seen"}
)

// checkTimestamps holds the named top-level properties of b, a valid JSON
// object whose timestamps already passed RFC 3339 validation, to the stricter
// STIX form: UTC written as Z, and at most six fraction digits. It runs for
// every published object, so it reads raw bytes and allocates only for
// escaped keys or values.
func checkTimestamps(b []byte, names []string) error {
	return eachMember(b, func(key, val []byte) error {
		name := rawString(key)
		for _, n := range names {
			if string(name) != n {
				continue
			}
			s := rawString(val)
			if len(s) < 20 {
				return nil // not a string: the decoder judged it already
			}
			if last := s[len(s)-1]; last != 'Z' && last != 'z' {
				return fmt.Errorf("%s %q: STIX timestamps end in Z, not a UTC offset", n, s)
			}
			if s[19] == '.' && len(s)-21 > 6 {
				return fmt.Errorf("%s %q: more than six fraction digits", n, s)
			}
		}
		return nil
	})
}

// rawString returns the contents of a raw JSON string token, unescaped (a
// copy) only when it has escapes; nil when raw is not a string.
func rawString(raw []byte) []byte {
	if len(raw) < 2 || raw[0] != '"' {
		return nil
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1]
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return []byte(s)
}

// eachMember calls f with the raw key and value of each top-level member of
// b, which must be well-formed JSON (the stix decoders checked it). It stops
// at the first error f returns.
func eachMember(b []byte, f func(key, val []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] == '}' {
			return nil
		}
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		kEnd := endOfString(b, i)
		key := b[i:kEnd]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return nil
		}
		i = skipSpace(b, i+1)
		vEnd := endOfValue(b, i)
		if err := f(key, b[i:vEnd]); err != nil {
			return err
		}
		i = vEnd
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// endOfString returns the index after the string token starting at b[i].
// It jumps from quote to quote (bytes.IndexByte is vectorised): strings are
// most of a STIX object.
func endOfString(b []byte, i int) int {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return len(b)
		}
		j += k
		n := 0 // backslashes right before the quote: odd means escaped
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		j++
	}
}

// endOfValue returns the index after the value starting at b[i].
func endOfValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = endOfString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}

// CheckFrame applies the checks the app applies to a frame an app publishes
// ("<topic> <json>"), so that tools can tell a user before sending what the
// bus would drop. Envelopes are checked without their snapshot id, which
// only the running app knows. The error names the cause first.
func CheckFrame(frame []byte) error {
	if _, rej := decodeFrame(frame); rej != nil {
		return rej
	}
	return nil
}
