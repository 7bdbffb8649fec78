// Package messages defines what flows over the bus: the protobuf messages the
// actors exchange (bus.proto, generated Go committed; regenerate with
// `make proto`) and the topics objects are routed by. The STIX 2.1 objects
// themselves are in package messages/stix.
package messages

import (
	"errors"
	"fmt"
)

// Topics, as in shared/specs/messages.md. A message's topic follows from its
// type, never from what a sender claimed.
const (
	TopicIndicator        = "stix2/indicator"
	TopicSighting         = "stix2/sighting"
	TopicSnapshotRequest  = "threatbus/snapshotrequest"
	TopicSnapshotEnvelope = "threatbus/snapshotenvelope"
)

// Object types the bus routes.
const (
	TypeIndicator        = "indicator"
	TypeSighting         = "sighting"
	TypeSnapshotRequest  = "snapshotrequest"
	TypeSnapshotEnvelope = "snapshotenvelope"
)

// ErrUnknownType is returned for a "type" that has no topic.
var ErrUnknownType = errors.New("unknown message type (want indicator, sighting, snapshotrequest or snapshotenvelope)")

// TopicFor returns the topic of an object type.
func TopicFor(typ string) (string, error) {
	switch typ {
	case TypeIndicator:
		return TopicIndicator, nil
	case TypeSighting:
		return TopicSighting, nil
	case TypeSnapshotRequest:
		return TopicSnapshotRequest, nil
	case TypeSnapshotEnvelope:
		return TopicSnapshotEnvelope, nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownType, typ)
}

// Validate checks that e is an envelope this code can route.
func (e *Envelope) Validate() error {
	switch {
	case e == nil:
		return fmt.Errorf("messages: nil envelope")
	case e.Version != EnvelopeVersion_ENVELOPE_VERSION_1:
		return fmt.Errorf("messages: envelope version %d not supported (want %d)", e.Version, EnvelopeVersion_ENVELOPE_VERSION_1)
	case e.Id == "":
		return fmt.Errorf("messages: envelope without id")
	case len(e.Payload) == 0:
		return fmt.Errorf("messages: envelope %s without payload", e.Id)
	}
	topic, err := TopicFor(e.Type)
	if err != nil {
		return err
	}
	if e.Topic != topic {
		return fmt.Errorf("messages: envelope of type %q on topic %q (want %q)", e.Type, e.Topic, topic)
	}
	return nil
}

// SnapshotTypesFor returns the snapshot types a subscription to topic covers:
// "", "stix2" and "stix2/" cover both, "stix2/indicator" only indicators,
// "threatbus/…" none.
func SnapshotTypesFor(topic string) []SnapshotType {
	var out []SnapshotType
	if covers(topic, TopicIndicator) {
		out = append(out, SnapshotType_SNAPSHOT_TYPE_INDICATOR)
	}
	if covers(topic, TopicSighting) {
		out = append(out, SnapshotType_SNAPSHOT_TYPE_SIGHTING)
	}
	return out
}

// covers reports whether a subscription to prefix receives topic.
func covers(prefix, topic string) bool {
	return len(topic) >= len(prefix) && topic[:len(prefix)] == prefix
}
