package stix

import (
	"github.com/threatbus/threatbus/messages"
)

// Message types as they appear in the "type" property, and the topics they
// are published on; the definitions are package messages', where routing
// lives.
const (
	TypeIndicator        = messages.TypeIndicator
	TypeSighting         = messages.TypeSighting
	TypeSnapshotRequest  = messages.TypeSnapshotRequest
	TypeSnapshotEnvelope = messages.TypeSnapshotEnvelope

	TopicIndicator        = messages.TopicIndicator
	TopicSighting         = messages.TopicSighting
	TopicSnapshotRequest  = messages.TopicSnapshotRequest
	TopicSnapshotEnvelope = messages.TopicSnapshotEnvelope
)

// TopicFor maps a message type to its topic (messages.TopicFor). The bus
// derives the topic from the type, never from what a sender claimed, so that
// a misbehaving app cannot inject sightings into the indicator stream.
func TopicFor(typ string) (string, error) { return messages.TopicFor(typ) }

// Peek returns the top-level "type" and "id" of a JSON message without
// decoding it, for routing. id is "" when the message has none (snapshot
// messages). The whole message is still checked to be exactly one well-formed
// JSON object, because a router that forwards garbage only moves the failure
// to every subscriber. Duplicate "type" or "id" properties are refused: a
// reader that keeps the first and one that keeps the last would otherwise
// disagree about where the message belongs.
func Peek(b []byte) (typ, id string, err error) {
	m, err := newMembers(b)
	if err != nil {
		return "", "", err
	}
	var typRaw, idRaw []byte
	for {
		key, esc, val, ok, err := m.next()
		if err != nil {
			return "", "", err
		}
		if !ok {
			break
		}
		switch string(unescapeKey(key, esc)) {
		case "type":
			if typRaw != nil {
				return "", "", fieldErr("message", "type", "appears more than once")
			}
			typRaw = val
		case "id":
			if idRaw != nil {
				return "", "", fieldErr("message", "id", "appears more than once")
			}
			idRaw = val
		}
	}
	if typRaw == nil {
		return "", "", fieldErr("message", "type", "missing")
	}
	typ, ok := internType(typRaw)
	if !ok {
		if typ, ok = decodeString(typRaw); !ok {
			return "", "", fieldErr("message", "type", "must be a string, got %s", jsonKind(typRaw))
		}
	}
	if idRaw != nil {
		if id, ok = decodeString(idRaw); !ok {
			return "", "", fieldErr("message", "id", "must be a string, got %s", jsonKind(idRaw))
		}
	}
	return typ, id, nil
}

// internType returns the package constant for the common types so that the
// routing path does not allocate a string per message.
func internType(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	switch string(raw[1 : len(raw)-1]) {
	case TypeIndicator:
		return TypeIndicator, true
	case TypeSighting:
		return TypeSighting, true
	case TypeSnapshotRequest:
		return TypeSnapshotRequest, true
	case TypeSnapshotEnvelope:
		return TypeSnapshotEnvelope, true
	}
	return "", false
}
