package stix

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Common holds the properties every STIX object has (and the bus checks).
type Common struct {
	Type        string
	SpecVersion string
	ID          string
	Created     time.Time
	Modified    time.Time
}

// Message is what Decode returns: one of *Indicator, *Sighting,
// *SnapshotRequest or *SnapshotEnvelope.
type Message interface {
	// MessageType is the "type" property.
	MessageType() string
	// Bytes is the message exactly as received or created.
	Bytes() []byte
}

// Decode decodes and validates any message the bus routes, dispatching on its
// "type". Types without a topic yield ErrUnknownType.
func Decode(b []byte) (Message, error) {
	typ, _, err := Peek(b)
	if err != nil {
		return nil, err
	}
	switch typ {
	case TypeIndicator:
		return DecodeIndicator(b)
	case TypeSighting:
		return DecodeSighting(b)
	case TypeSnapshotRequest:
		return DecodeSnapshotRequest(b)
	case TypeSnapshotEnvelope:
		return DecodeSnapshotEnvelope(b)
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownType, typ)
}

// Indices of the properties the Indicator and Sighting decoders read. They
// share one table (the common properties, then the indicator's, then the
// sighting's; see indicator.go and sighting.go) so that Validate can collect
// them for either type in a single pass, before it knows which one it has.
const (
	fType = iota
	fSpecVersion
	fID
	fCreated
	fModified
	numCommon
)

// fieldSet is a set of field indices, one bit each.
type fieldSet uint32

func (s fieldSet) has(k int) bool { return s&(1<<k) != 0 }

const (
	commonFields    fieldSet = 1<<numCommon - 1
	indicatorFields fieldSet = 1<<numIndicatorFields - 1 // common ones included
	sightingFields  fieldSet = commonFields | (1<<numObjectFields-1)&^indicatorFields
)

// fieldNames are the property names of the field indices.
var fieldNames = [numObjectFields]string{
	"type", "spec_version", "id", "created", "modified",
	"pattern", "pattern_type", "pattern_version", "valid_from", "valid_until", "x_threatbus_update",
	"sighting_of_ref", "first_seen", "last_seen", "count",
	"x_threatbus_indicator", "x_threatbus_indicator_value", "x_threatbus_match_type",
	"x_threatbus_source", "x_threatbus_sighting_context",
}

// objectField returns the field index of a property name, or -1.
func objectField(name []byte) int {
	switch string(name) {
	case "type":
		return fType
	case "spec_version":
		return fSpecVersion
	case "id":
		return fID
	case "created":
		return fCreated
	case "modified":
		return fModified
	case "pattern":
		return fPattern
	case "pattern_type":
		return fPatternType
	case "pattern_version":
		return fPatternVersion
	case "valid_from":
		return fValidFrom
	case "valid_until":
		return fValidUntil
	case "x_threatbus_update":
		return fUpdate
	case "sighting_of_ref":
		return fSightingOfRef
	case "first_seen":
		return fFirstSeen
	case "last_seen":
		return fLastSeen
	case "count":
		return fCount
	case "x_threatbus_indicator":
		return fTBIndicator
	case "x_threatbus_indicator_value":
		return fTBIndicatorValue
	case "x_threatbus_match_type":
		return fTBMatchType
	case "x_threatbus_source":
		return fTBSource
	case "x_threatbus_sighting_context":
		return fTBContext
	}
	return -1
}

// objectFields holds the raw values of the properties one pass collected.
type objectFields struct {
	raw [numObjectFields][]byte
	// dups are the fields that appeared more than once, for Validate,
	// which learns only at the end which of them matter.
	dups fieldSet
}

// collect stores the raw values of the properties in want. Everything else
// is only syntax-checked and stays in the raw bytes. A property of want
// that appears twice is an error for object right away, unless object is
// "", in which case it is recorded in dups and the scan goes on. checkUTF8
// holds every string in b, not only the collected ones, to valid UTF-8.
func (f *objectFields) collect(object string, b []byte, want fieldSet, checkUTF8 bool) error {
	m, err := newMembers(b)
	if err != nil {
		return err
	}
	m.utf8 = checkUTF8
	for {
		key, esc, val, ok, err := m.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		k := objectField(unescapeKey(key, esc))
		if k < 0 || !want.has(k) {
			continue
		}
		if f.raw[k] != nil {
			if object != "" {
				return fieldErr(object, fieldNames[k], "appears more than once")
			}
			f.dups |= 1 << k
		}
		f.raw[k] = val
	}
}

// collect stores the raw values of the properties that index() knows into
// dst. Everything else is only syntax-checked and stays in the raw bytes.
func collect(object string, b []byte, index func([]byte) int, names []string, dst [][]byte) error {
	m, err := newMembers(b)
	if err != nil {
		return err
	}
	for {
		key, esc, val, ok, err := m.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		k := index(unescapeKey(key, esc))
		if k < 0 {
			continue
		}
		if dst[k] != nil {
			return fieldErr(object, names[k], "appears more than once")
		}
		dst[k] = val
	}
}

var errMissing = errors.New("required but missing")

// rawStringIs reports whether raw is the JSON string s written without
// escapes. Properties such as spec_version nearly always hold one of a few
// constants; returning the constant spares decoding a copy of the bytes.
func rawStringIs(raw []byte, s string) bool {
	return len(raw) == len(s)+2 && raw[0] == '"' && string(raw[1:len(raw)-1]) == s
}

// decodeMode says what the Indicator and Sighting decoders run for.
type decodeMode struct {
	// strictTime holds timestamps to the STIX form (see StrictTimestamps).
	strictTime bool
	// check only validates, for Validate: the strings filled in alias
	// the message where they can instead of copying it (see viewString),
	// so the decoded struct must not outlive the call, and a "stix"
	// pattern is checked but not parsed into Parsed.
	check bool
	// utf8 says that every string in the message is known to be valid
	// UTF-8 (StrictUTF8), which spares check mode looking again.
	utf8 bool
}

// stringField is stringField, except that check mode returns a view of raw
// instead of a copy where it can (see viewString).
func (m decodeMode) stringField(object, name string, raw []byte, required bool) (string, error) {
	if m.check {
		if s, ok := viewString(raw, m.utf8); ok {
			return s, nil
		}
	}
	return stringField(object, name, raw, required)
}

// constField is stringField for a property that usually holds one of
// consts: then it returns that constant and allocates nothing.
func (m decodeMode) constField(object, name string, raw []byte, required bool, consts ...string) (string, error) {
	for _, c := range consts {
		if rawStringIs(raw, c) {
			return c, nil
		}
	}
	return m.stringField(object, name, raw, required)
}

func stringField(object, name string, raw []byte, required bool) (string, error) {
	if raw == nil {
		if required {
			return "", &FieldError{Object: object, Field: name, Err: errMissing}
		}
		return "", nil
	}
	s, ok := decodeString(raw)
	if !ok {
		return "", fieldErr(object, name, "must be a string, got %s", jsonKind(raw))
	}
	return s, nil
}

// timeField decodes an RFC 3339 timestamp property. strict additionally
// requires the STIX form (see StrictTimestamps).
func timeField(object, name string, raw []byte, required, strict bool) (time.Time, error) {
	if raw == nil && !required {
		return time.Time{}, nil
	}
	// Fast path: parse the bytes in place instead of copying them into a
	// string first. A valid timestamp is ASCII without backslashes, so
	// when this succeeds the bytes are exactly what decoding would give;
	// everything else takes the general path, which words the error.
	if len(raw) >= 2 && raw[0] == '"' {
		s := raw[1 : len(raw)-1]
		if t, err := parseTimestamp(s, false); err == nil {
			if strict {
				if err := checkSTIXTimestamp(s); err != nil {
					return time.Time{}, &FieldError{Object: object, Field: name, Err: err}
				}
			}
			return t, nil
		}
	}
	s, err := stringField(object, name, raw, required)
	if err != nil {
		return time.Time{}, err
	}
	t, err := ParseTimestamp(s)
	if err == nil && strict {
		err = checkSTIXTimestamp(s)
	}
	if err != nil {
		return time.Time{}, &FieldError{Object: object, Field: name, Err: err}
	}
	return t, nil
}

func (c *Common) decode(object string, raw *[numObjectFields][]byte, m decodeMode) error {
	var err error
	if c.Type, err = m.constField(object, "type", raw[fType], true, object); err != nil {
		return err
	}
	if c.Type != object {
		return fieldErr(object, "type", "is %q, want %q", c.Type, object)
	}
	if c.SpecVersion, err = m.constField(object, "spec_version", raw[fSpecVersion], true, "2.1"); err != nil {
		return err
	}
	if c.SpecVersion != "2.1" {
		return fieldErr(object, "spec_version", "is %q, want \"2.1\"", c.SpecVersion)
	}
	if c.ID, err = m.stringField(object, "id", raw[fID], true); err != nil {
		return err
	}
	if err := checkIdentifier(c.ID, object); err != nil {
		return &FieldError{Object: object, Field: "id", Err: err}
	}
	if c.Created, err = timeField(object, "created", raw[fCreated], true, m.strictTime); err != nil {
		return err
	}
	if c.Modified, err = timeField(object, "modified", raw[fModified], true, m.strictTime); err != nil {
		return err
	}
	if c.Modified.Before(c.Created) {
		return fieldErr(object, "modified", "is before created; STIX requires modified >= created")
	}
	return nil
}

// checkIdentifier validates a STIX identifier "<type>--<UUID>". wantType ""
// accepts any object type. UUID versions 1 to 5 are accepted on input (older
// producers use v1/v5); the bus itself only emits v4.
func checkIdentifier(id, wantType string) error {
	typ, u, ok := strings.Cut(id, "--")
	if !ok {
		return fmt.Errorf("%q is not of the form <type>--<UUID>", id)
	}
	if wantType != "" && typ != wantType {
		return fmt.Errorf("%q must start with %q", id, wantType+"--")
	}
	if !validObjectType(typ) {
		return fmt.Errorf("%q: %q is not a valid STIX object type", id, typ)
	}
	if !validUUID(u) {
		return fmt.Errorf("%q: %q is not an RFC 4122 UUID of version 1 to 5", id, u)
	}
	return nil
}

// validObjectType follows the STIX type rule: lower-case letters, digits
// and single hyphens, starting with a letter and not ending in a hyphen, 3
// to 250 characters.
func validObjectType(t string) bool {
	if len(t) < 3 || len(t) > 250 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9':
			if i == 0 {
				return false
			}
		case c == '-':
			if i == 0 || t[i-1] == '-' {
				return false
			}
		default:
			return false
		}
	}
	return t[len(t)-1] != '-'
}

// validUUID accepts the RFC 4122 form 8-4-4-4-12 in hex digits, with the
// version (1 to 5) and the variant (10xx) that checkIdentifier requires.
func validUUID(u string) bool {
	if len(u) != 36 || u[8] != '-' || u[13] != '-' || u[18] != '-' || u[23] != '-' {
		return false
	}
	if v := u[14]; v < '1' || v > '5' {
		return false
	}
	switch u[19] {
	case '8', '9', 'a', 'b', 'A', 'B':
	default:
		return false
	}
	return allHex(u[:8]) && allHex(u[9:13]) && allHex(u[14:18]) && allHex(u[19:23]) && allHex(u[24:])
}

// notHex is 1 for the bytes that are not hex digits.
var notHex = func() (t [256]uint8) {
	for c := range t {
		if !isHex(byte(c)) {
			t[c] = 1
		}
	}
	return t
}()

// allHex reports whether s is all hex digits. It looks at every byte
// without branching, which for the short runs of a UUID is several times
// faster than stopping at the first bad one.
func allHex(s string) bool {
	var bad uint8
	for i := 0; i < len(s); i++ {
		bad |= notHex[s[i]]
	}
	return bad == 0
}

func newID(typ string) (string, error) {
	u, err := uuid.NewRandom()
	if err != nil {
		return "", fmt.Errorf("stix: generate %s id: %w", typ, err)
	}
	return typ + "--" + u.String(), nil
}

// NewSnapshotID returns a fresh id for a snapshot round (a UUIDv4).
func NewSnapshotID() string {
	return uuid.NewString()
}
