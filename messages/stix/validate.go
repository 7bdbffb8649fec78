package stix

import "math/bits"

// Strict selects checks beyond those of DecodeIndicator and DecodeSighting,
// for an edge that takes objects from outside the bus and holds them to the
// letter of STIX.
type Strict uint8

const (
	// StrictUTF8 requires the whole message to be valid UTF-8. Otherwise
	// only the strings a decoder reads are checked, and every other value
	// only for well-formed JSON.
	StrictUTF8 Strict = 1 << iota
	// StrictTimestamps requires created, modified, valid_from,
	// valid_until, first_seen and last_seen, where present, to be in the
	// form STIX prescribes and python-stix2 insists on: UTC written as Z
	// and at most six fraction digits. Otherwise any RFC 3339 timestamp is
	// accepted.
	StrictTimestamps
)

// Validate checks b, which must be an Indicator or a Sighting, as Peek and
// then DecodeIndicator or DecodeSighting would, plus the checks strict
// selects, in a single pass over b and without returning a view. It is for
// an edge that forwards b as is and only needs the verdict and the type,
// such as an app's inbound path, where Peek, a decoder and separate passes
// for UTF-8 and timestamps would read every message several times.
// Nothing is built only to be thrown away (no strings, no pattern tree), so
// that a valid message in the usual form costs no allocation.
//
// typ is the message's type, also on error when b has one. The error says
// what is wrong; for a message with several faults it may name another one
// than Peek followed by a decoder would.
func Validate(b []byte, strict Strict) (typ string, err error) {
	var f objectFields
	if err := f.collect("", b, indicatorFields|sightingFields, strict&StrictUTF8 != 0); err != nil {
		return "", err
	}
	// What Peek checks.
	for _, k := range [...]int{fType, fID} {
		if f.dups.has(k) {
			return "", fieldErr("message", fieldNames[k], "appears more than once")
		}
	}
	rawType := f.raw[fType]
	if rawType == nil {
		return "", fieldErr("message", "type", "missing")
	}
	typ, ok := internType(rawType)
	if !ok {
		if typ, ok = decodeString(rawType); !ok {
			return "", fieldErr("message", "type", "must be a string, got %s", jsonKind(rawType))
		}
	}
	var fields fieldSet
	switch typ {
	case TypeIndicator:
		fields = indicatorFields
	case TypeSighting:
		fields = sightingFields
	default:
		return typ, fieldErr("message", "type", "%q is not an indicator or a sighting", typ)
	}
	// What the decoder checks. Only now is it known which duplicates
	// matter: a sighting may carry two "pattern" properties.
	if d := f.dups & fields; d != 0 {
		return typ, fieldErr(typ, fieldNames[bits.TrailingZeros32(uint32(d))], "appears more than once")
	}
	// The decoded struct is thrown away: check mode spares copying its
	// strings and building the pattern's tree.
	m := decodeMode{strictTime: strict&StrictTimestamps != 0, check: true, utf8: strict&StrictUTF8 != 0}
	if typ == TypeIndicator {
		var ind Indicator
		err = ind.decode(&f.raw, m)
	} else {
		var s Sighting
		err = s.decode(&f.raw, m)
	}
	return typ, err
}
