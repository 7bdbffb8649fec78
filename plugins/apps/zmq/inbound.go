package zmq

import (
	"bytes"
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
// utf8.Valid, peek and checkObject check one after another. A valid JSON object whose strings are valid UTF-8 is
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
// A fault of the object itself names its type as the cause; an object that
// is valid but for the strict timestamp form the original's stix2 library
// insisted on (Z, at most six fraction digits: Python's %f) is a timestamp
// fault.
func checkObject(typ string, b []byte) *rejection {
	cause := causeIndicator
	switch typ {
	case messages.TypeIndicator:
	case messages.TypeSighting:
		cause = causeSighting
	default:
		return reject(causeUnsupportedType, fmt.Errorf("type %.64q: apps publish only indicators and sightings here", typ))
	}
	if _, err := stix.Validate(b, 0); err != nil {
		return reject(cause, err)
	}
	if _, err := stix.Validate(b, stix.StrictTimestamps); err != nil {
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
