// Package brokerjson is the codec of Broker's WebSocket JSON data model
// (version 1), the format Zeek's WebSocket API speaks: the typed values
// ({"@data-type": T, "data": V}), the data, ack and error messages that
// carry them, and the event encoding Zeek uses on top.
//
// It decodes what Zeek really sends, which is not always strict JSON
// (Broker writes raw control characters, a "\v" escape and "nan"/"inf"
// reals), and it encodes only strict JSON that Broker's reader accepts.
// Integers never pass through float64: a count is a uint64 and an integer
// an int64 from the digits on the wire. Timestamps carry no zone and are UTC;
// timespans take every unit Broker knows (ns, us, ms, s, min, h, d), although
// the published schema forgets "us".
//
// The package knows the wire format only: what an event means is the
// caller's business, and it must not log or depend on the bus.
package brokerjson

import (
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Type is a value's "@data-type".
type Type uint8

// The types of Broker's data model.
const (
	TypeNone Type = iota + 1
	TypeBoolean
	TypeCount
	TypeInteger
	TypeReal
	TypeTimespan
	TypeTimestamp
	TypeString
	TypeEnumValue
	TypeAddress
	TypeSubnet
	TypePort
	TypeVector
	TypeSet
	TypeTable
)

var typeNames = [...]string{
	TypeNone:      "none",
	TypeBoolean:   "boolean",
	TypeCount:     "count",
	TypeInteger:   "integer",
	TypeReal:      "real",
	TypeTimespan:  "timespan",
	TypeTimestamp: "timestamp",
	TypeString:    "string",
	TypeEnumValue: "enum-value",
	TypeAddress:   "address",
	TypeSubnet:    "subnet",
	TypePort:      "port",
	TypeVector:    "vector",
	TypeSet:       "set",
	TypeTable:     "table",
}

// String returns the name used in "@data-type".
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

func typeByName(name string) (Type, bool) {
	for t, n := range typeNames {
		if n != "" && n == name {
			return Type(t), true
		}
	}
	return 0, false
}

// Value is one Broker value: None, Boolean, Count, Integer, Real, Timespan,
// Timestamp, String, EnumValue, Address, Subnet, Port, Vector, Set or Table.
// Zeek records travel as a Vector of their fields in declaration order.
type Value interface {
	Type() Type
	isValue()
}

type (
	// None is Broker's nil, Zeek's unset optional field.
	None struct{}
	// Boolean is Zeek's bool.
	Boolean bool
	// Count is Zeek's count: an unsigned 64-bit integer.
	Count uint64
	// Integer is Zeek's int: a signed 64-bit integer.
	Integer int64
	// Real is Zeek's double. Only finite values can be encoded.
	Real float64
	// Timespan is Zeek's interval, in nanoseconds like Broker's.
	Timespan time.Duration
	// Timestamp is Zeek's time. It travels in UTC with millisecond
	// precision: encoding truncates what is finer, and years outside
	// 0000–9999 cannot be written.
	Timestamp struct{ time.Time }
	// String is Zeek's string.
	String string
	// EnumValue is a Zeek enum value by its full name ("Intel::ADDR").
	EnumValue string
	// Address is Zeek's addr (no zone).
	Address struct{ netip.Addr }
	// Subnet is Zeek's subnet (no zone).
	Subnet struct{ netip.Prefix }
	// Port is Zeek's port: "80/tcp".
	Port struct {
		Number   uint16
		Protocol Protocol
	}
	// Vector is an ordered sequence: a Zeek vector or record.
	Vector []Value
	// Set is a Zeek set; the elements keep their wire order.
	Set []Value
	// Table is a Zeek table; the entries keep their wire order.
	Table []TableEntry
)

// TableEntry is one key/value pair of a Table.
type TableEntry struct {
	Key, Value Value
}

// Protocol is a port's transport protocol.
type Protocol uint8

// The protocols of Broker's port type. Unknown is written "?".
const (
	ProtocolUnknown Protocol = iota
	ProtocolTCP
	ProtocolUDP
	ProtocolICMP
)

func (p Protocol) String() string {
	switch p {
	case ProtocolTCP:
		return "tcp"
	case ProtocolUDP:
		return "udp"
	case ProtocolICMP:
		return "icmp"
	}
	return "?"
}

func (None) Type() Type      { return TypeNone }
func (Boolean) Type() Type   { return TypeBoolean }
func (Count) Type() Type     { return TypeCount }
func (Integer) Type() Type   { return TypeInteger }
func (Real) Type() Type      { return TypeReal }
func (Timespan) Type() Type  { return TypeTimespan }
func (Timestamp) Type() Type { return TypeTimestamp }
func (String) Type() Type    { return TypeString }
func (EnumValue) Type() Type { return TypeEnumValue }
func (Address) Type() Type   { return TypeAddress }
func (Subnet) Type() Type    { return TypeSubnet }
func (Port) Type() Type      { return TypePort }
func (Vector) Type() Type    { return TypeVector }
func (Set) Type() Type       { return TypeSet }
func (Table) Type() Type     { return TypeTable }

func (None) isValue()      {}
func (Boolean) isValue()   {}
func (Count) isValue()     {}
func (Integer) isValue()   {}
func (Real) isValue()      {}
func (Timespan) isValue()  {}
func (Timestamp) isValue() {}
func (String) isValue()    {}
func (EnumValue) isValue() {}
func (Address) isValue()   {}
func (Subnet) isValue()    {}
func (Port) isValue()      {}
func (Vector) isValue()    {}
func (Set) isValue()       {}
func (Table) isValue()     {}

// NewTimestamp returns t as a Timestamp in UTC.
func NewTimestamp(t time.Time) Timestamp { return Timestamp{t.UTC()} }

// NewAddress returns a as an Address.
func NewAddress(a netip.Addr) Address { return Address{a} }

// NewSubnet returns p as a Subnet.
func NewSubnet(p netip.Prefix) Subnet { return Subnet{p} }

// Equal reports whether two values are the same: same types, same contents,
// same order. Reals compare by their bits (so -0 is not 0 and a NaN equals
// itself), timestamps by instant.
func Equal(a, b Value) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if a.Type() != b.Type() {
		return false
	}
	switch x := a.(type) {
	case Real:
		return math.Float64bits(float64(x)) == math.Float64bits(float64(b.(Real)))
	case Timestamp:
		return x.Equal(b.(Timestamp).Time)
	case Vector:
		return equalSlices(x, b.(Vector))
	case Set:
		return equalSlices(x, b.(Set))
	case Table:
		y := b.(Table)
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if !Equal(x[i].Key, y[i].Key) || !Equal(x[i].Value, y[i].Value) {
				return false
			}
		}
		return true
	}
	return a == b
}

func equalSlices(x, y []Value) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if !Equal(x[i], y[i]) {
			return false
		}
	}
	return true
}
