package brokerjson

import (
	"fmt"
)

// Zeek frames an event as the vector [count 1, count 1, [name, args,
// metadata?]]: the first count is the format version, the second says
// "event" (other message types are log writes and identifier updates).
const (
	eventVersion = 1
	eventType    = 1
)

// MetadataNetworkTimestamp is the metadata id of the network time at which
// Zeek raised the event (Zeek ≥ 8).
const MetadataNetworkTimestamp = 1

// Event is a Zeek event.
type Event struct {
	// Name is the fully qualified event name, e.g. "Tenzir::intel".
	Name string
	// Args are the arguments; a record argument is a Vector of its fields.
	Args []Value
	// Metadata is what Zeek ≥ 8 attaches (HasMetadata true, possibly with
	// no entries); older versions send no metadata element (HasMetadata
	// false).
	Metadata    []MetadataEntry
	HasMetadata bool
}

// MetadataEntry is one item of an event's metadata.
type MetadataEntry struct {
	ID    uint64
	Value Value
}

// NewEvent returns an event without metadata, as clients send them.
func NewEvent(name string, args ...Value) Event {
	return Event{Name: name, Args: args}
}

// Value returns the event in Broker's framing.
func (e Event) Value() Vector {
	args := Vector(e.Args)
	if args == nil {
		args = Vector{}
	}
	inner := Vector{String(e.Name), args}
	if e.HasMetadata || len(e.Metadata) > 0 {
		md := make(Vector, len(e.Metadata))
		for i, m := range e.Metadata {
			md[i] = Vector{Count(m.ID), m.Value}
		}
		inner = append(inner, md)
	}
	return Vector{Count(eventVersion), Count(eventType), inner}
}

// EncodeEvent encodes a data message carrying e on topic.
func EncodeEvent(topic string, e Event) ([]byte, error) {
	return EncodeData(topic, e.Value())
}

// EventOf reads an event from Broker's framing.
func EventOf(v Value) (Event, error) {
	outer, ok := v.(Vector)
	if !ok || len(outer) != 3 {
		return Event{}, dataErr("not an event: want a vector [version, type, content], got %s", describe(v))
	}
	if ver, ok := outer[0].(Count); !ok || ver != eventVersion {
		return Event{}, dataErr("not an event: format version %s, want count 1", describe(outer[0]))
	}
	if typ, ok := outer[1].(Count); !ok || typ != eventType {
		return Event{}, dataErr("not an event: message type %s, want count 1", describe(outer[1]))
	}
	inner, ok := outer[2].(Vector)
	if !ok || len(inner) < 2 || len(inner) > 3 {
		return Event{}, dataErr("event content must be a vector [name, args, metadata?], got %s", describe(outer[2]))
	}
	name, ok := inner[0].(String)
	if !ok {
		return Event{}, dataErr("event name must be a string, got %s", describe(inner[0]))
	}
	args, ok := inner[1].(Vector)
	if !ok {
		return Event{}, dataErr("arguments of event %q must be a vector, got %s", name, describe(inner[1]))
	}
	e := Event{Name: string(name), Args: []Value(args)}
	if len(inner) == 3 {
		md, ok := inner[2].(Vector)
		if !ok {
			return Event{}, dataErr("metadata of event %q must be a vector, got %s", name, describe(inner[2]))
		}
		e.HasMetadata = true
		e.Metadata = make([]MetadataEntry, len(md))
		for i, m := range md {
			pair, ok := m.(Vector)
			if !ok || len(pair) != 2 {
				return Event{}, dataErr("metadata %d of event %q must be a vector [id, value], got %s", i, name, describe(m))
			}
			id, ok := pair[0].(Count)
			if !ok {
				return Event{}, dataErr("metadata %d of event %q: id must be a count, got %s", i, name, describe(pair[0]))
			}
			e.Metadata[i] = MetadataEntry{ID: uint64(id), Value: pair[1]}
		}
	}
	return e, nil
}

// NetworkTimestamp returns the event's network-time metadata, if any.
func (e Event) NetworkTimestamp() (Timestamp, bool) {
	for _, m := range e.Metadata {
		if m.ID == MetadataNetworkTimestamp {
			ts, ok := m.Value.(Timestamp)
			return ts, ok
		}
	}
	return Timestamp{}, false
}

func describe(v Value) string {
	if v == nil {
		return "nothing"
	}
	switch x := v.(type) {
	case Vector:
		return fmt.Sprintf("a vector of %d", len(x))
	case Count:
		return fmt.Sprintf("count %d", uint64(x))
	}
	return "a " + v.Type().String()
}
