package stix

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// SnapshotType says which objects a snapshot is about. The numbers are on
// the wire and fixed by existing clients.
type SnapshotType int

const (
	SnapshotIndicators SnapshotType = 1
	SnapshotSightings  SnapshotType = 2
)

func (t SnapshotType) String() string {
	switch t {
	case SnapshotIndicators:
		return "indicators"
	case SnapshotSightings:
		return "sightings"
	}
	return "SnapshotType(" + strconv.Itoa(int(t)) + ")"
}

// ObjectType is the STIX type a snapshot of this kind carries.
func (t SnapshotType) ObjectType() string {
	switch t {
	case SnapshotIndicators:
		return TypeIndicator
	case SnapshotSightings:
		return TypeSighting
	}
	return ""
}

func (t SnapshotType) valid() bool { return t == SnapshotIndicators || t == SnapshotSightings }

// SnapshotRequest asks apps for everything of one type seen within Window.
// Raw aliases the decoded slice.
type SnapshotRequest struct {
	SnapshotType SnapshotType
	SnapshotID   string
	Window       time.Duration // "snapshot", whole seconds on the wire
	Raw          []byte
}

// MessageType implements Message.
func (*SnapshotRequest) MessageType() string { return TypeSnapshotRequest }

// Bytes implements Message.
func (r *SnapshotRequest) Bytes() []byte { return r.Raw }

// SnapshotEnvelope carries one object answering a SnapshotRequest. Body is
// the nested object's bytes inside Raw, so unwrapping it for the requester
// copies nothing and changes nothing.
type SnapshotEnvelope struct {
	SnapshotType SnapshotType
	SnapshotID   string
	Body         []byte
	Raw          []byte
}

// MessageType implements Message.
func (*SnapshotEnvelope) MessageType() string { return TypeSnapshotEnvelope }

// Bytes implements Message.
func (e *SnapshotEnvelope) Bytes() []byte { return e.Raw }

const (
	sType = iota
	sSnapshotType
	sSnapshotID
	sSnapshot // request only
	sBody     // envelope only
	numSnapshotFields
)

var snapshotNames = [numSnapshotFields]string{"type", "snapshot_type", "snapshot_id", "snapshot", "body"}

func requestField(name []byte) int {
	switch string(name) {
	case "type":
		return sType
	case "snapshot_type":
		return sSnapshotType
	case "snapshot_id":
		return sSnapshotID
	case "snapshot":
		return sSnapshot
	}
	return -1
}

func envelopeField(name []byte) int {
	switch string(name) {
	case "type":
		return sType
	case "snapshot_type":
		return sSnapshotType
	case "snapshot_id":
		return sSnapshotID
	case "body":
		return sBody
	}
	return -1
}

// maxWindowSeconds keeps Window representable as a time.Duration.
const maxWindowSeconds = math.MaxInt64 / int64(time.Second)

// isJSONInteger accepts what Python's json.dumps writes for an int, and
// nothing with a fraction or exponent, so "1.5" seconds cannot sneak in.
func jsonInteger(raw []byte) (int64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	for i, c := range raw {
		if !('0' <= c && c <= '9' || i == 0 && c == '-') {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

func decodeSnapshotHeader(object string, b []byte, index func([]byte) int) (raw [numSnapshotFields][]byte, typ SnapshotType, id string, err error) {
	if err = collect(object, b, index, snapshotNames[:], raw[:]); err != nil {
		return
	}
	var t string
	if t, err = stringField(object, "type", raw[sType], true); err != nil {
		return
	}
	if t != object {
		err = fieldErr(object, "type", "is %q, want %q", t, object)
		return
	}
	r := raw[sSnapshotType]
	if r == nil {
		err = &FieldError{Object: object, Field: "snapshot_type", Err: errMissing}
		return
	}
	n, ok := jsonInteger(r)
	if typ = SnapshotType(n); !ok || !typ.valid() {
		err = fieldErr(object, "snapshot_type", "must be 1 (indicators) or 2 (sightings), got %s", r)
		return
	}
	if id, err = stringField(object, "snapshot_id", raw[sSnapshotID], true); err != nil {
		return
	}
	if id == "" {
		err = fieldErr(object, "snapshot_id", "must not be empty")
	}
	return
}

// DecodeSnapshotRequest validates b as a SnapshotRequest.
func DecodeSnapshotRequest(b []byte) (*SnapshotRequest, error) {
	raw, typ, id, err := decodeSnapshotHeader(TypeSnapshotRequest, b, requestField)
	if err != nil {
		return nil, err
	}
	r := raw[sSnapshot]
	if r == nil {
		return nil, &FieldError{Object: TypeSnapshotRequest, Field: "snapshot", Err: errMissing}
	}
	secs, ok := jsonInteger(r)
	if !ok || secs <= 0 || secs > maxWindowSeconds {
		return nil, fieldErr(TypeSnapshotRequest, "snapshot", "must be a positive whole number of seconds, got %s", r)
	}
	return &SnapshotRequest{SnapshotType: typ, SnapshotID: id, Window: time.Duration(secs) * time.Second, Raw: b}, nil
}

// NewSnapshotRequest builds
// {"type":"snapshotrequest","snapshot_type":T,"snapshot_id":"ID","snapshot":SECONDS}.
// window must be a positive whole number of seconds: the wire cannot carry
// fractions, and silently rounding would change what the requester asked for.
func NewSnapshotRequest(typ SnapshotType, id string, window time.Duration) (*SnapshotRequest, error) {
	const o = TypeSnapshotRequest
	if !typ.valid() {
		return nil, fieldErr(o, "snapshot_type", "must be 1 (indicators) or 2 (sightings), got %d", int(typ))
	}
	if id == "" {
		return nil, fieldErr(o, "snapshot_id", "must not be empty")
	}
	if window < time.Second || window%time.Second != 0 {
		return nil, fieldErr(o, "snapshot", "window %v is not a positive whole number of seconds", window)
	}
	out := make([]byte, 0, 128)
	// The original's bytes (Python's json.dumps separators), as the spec
	// and its test vector have them.
	out = append(out, `{"type": "snapshotrequest", "snapshot_type": `...)
	out = strconv.AppendInt(out, int64(typ), 10)
	out = append(out, `, "snapshot_id": `...)
	out = appendString(out, id)
	out = append(out, `, "snapshot": `...)
	out = strconv.AppendInt(out, int64(window/time.Second), 10)
	out = append(out, '}')
	return DecodeSnapshotRequest(out)
}

// DecodeSnapshotEnvelope validates b as a SnapshotEnvelope. The body must be
// an object whose type matches snapshot_type; it is not decoded further
// because the bus forwards it as is and the requester decodes it anyway.
func DecodeSnapshotEnvelope(b []byte) (*SnapshotEnvelope, error) {
	const o = TypeSnapshotEnvelope
	raw, typ, id, err := decodeSnapshotHeader(o, b, envelopeField)
	if err != nil {
		return nil, err
	}
	body := raw[sBody]
	if err := checkBody(typ, body); err != nil {
		return nil, err
	}
	return &SnapshotEnvelope{SnapshotType: typ, SnapshotID: id, Body: body, Raw: b}, nil
}

func checkBody(typ SnapshotType, body []byte) error {
	const o = TypeSnapshotEnvelope
	if body == nil {
		return &FieldError{Object: o, Field: "body", Err: errMissing}
	}
	if body[0] != '{' {
		return fieldErr(o, "body", "must be a JSON object, got %s", jsonKind(body))
	}
	bt, _, err := Peek(body)
	if err != nil {
		return &FieldError{Object: o, Field: "body", Err: err}
	}
	if bt != typ.ObjectType() {
		return fieldErr(o, "body", "is a %q but snapshot_type %d means %q", bt, int(typ), typ.ObjectType())
	}
	return nil
}

// NewSnapshotEnvelope wraps body, a JSON object, for snapshot id. The body
// is embedded as given (not as a string, and not re-encoded).
func NewSnapshotEnvelope(typ SnapshotType, id string, body []byte) (*SnapshotEnvelope, error) {
	const o = TypeSnapshotEnvelope
	if !typ.valid() {
		return nil, fieldErr(o, "snapshot_type", "must be 1 (indicators) or 2 (sightings), got %d", int(typ))
	}
	if id == "" {
		return nil, fieldErr(o, "snapshot_id", "must not be empty")
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, &FieldError{Object: o, Field: "body", Err: errors.New("is empty")}
	}
	if err := checkBody(typ, body); err != nil {
		return nil, err
	}
	out := make([]byte, 0, 96+len(id)+len(body))
	out = append(out, `{"type": "snapshotenvelope", "snapshot_type": `...)
	out = strconv.AppendInt(out, int64(typ), 10)
	out = append(out, `, "snapshot_id": `...)
	out = appendString(out, id)
	out = append(out, `, "body": `...)
	out = append(out, body...)
	out = append(out, '}')
	e, err := DecodeSnapshotEnvelope(out)
	if err != nil {
		return nil, fmt.Errorf("stix: built an invalid snapshot envelope: %w", err)
	}
	return e, nil
}
