package stix

import (
	"fmt"
	"time"
)

// Update is the Threat Bus property x_threatbus_update on an Indicator.
type Update string

const (
	// UpdateNone (property absent) means the indicator is new.
	UpdateNone Update = ""
	// UpdateRemove withdraws the indicator.
	UpdateRemove Update = "REMOVE"
	// UpdateEdit replaces an indicator the receiver already has.
	UpdateEdit Update = "EDIT"
)

// Indicator is a decoded STIX 2.1 Indicator. Raw is the message itself: it
// aliases the slice given to DecodeIndicator, so that slice must not be
// modified afterwards, and it is what gets forwarded — the fields are a
// read-only view for the bus's decisions.
type Indicator struct {
	Common
	Pattern        string
	PatternType    string
	PatternVersion string    // "" when absent
	ValidFrom      time.Time //
	ValidUntil     time.Time // zero when absent
	Update         Update    // x_threatbus_update

	// Parsed is the parsed pattern when PatternType is "stix", else nil.
	Parsed *Pattern

	Raw []byte
}

// MessageType implements Message.
func (*Indicator) MessageType() string { return TypeIndicator }

// Bytes implements Message.
func (i *Indicator) Bytes() []byte { return i.Raw }

// The indicator's properties follow the common ones in the field table it
// shares with Sighting (see object.go).
const (
	fPattern = numCommon + iota
	fPatternType
	fPatternVersion
	fValidFrom
	fValidUntil
	fUpdate
	numIndicatorFields
)

// DecodeIndicator validates b as a STIX 2.1 Indicator and returns a view of
// it. A "stix" pattern is parsed, because every consumer on the bus needs
// either the guarantee that it is valid or its AST.
func DecodeIndicator(b []byte) (*Indicator, error) {
	var f objectFields
	if err := f.collect(TypeIndicator, b, indicatorFields, false); err != nil {
		return nil, err
	}
	ind := &Indicator{Raw: b}
	if err := ind.decode(&f.raw, decodeMode{}); err != nil {
		return nil, err
	}
	return ind, nil
}

// decode fills in everything but Raw from the collected properties, and in
// check mode (see decodeMode) everything but Parsed too.
func (ind *Indicator) decode(raw *[numObjectFields][]byte, m decodeMode) error {
	if err := ind.Common.decode(TypeIndicator, raw, m); err != nil {
		return err
	}
	const o = TypeIndicator
	var err error
	if ind.Pattern, err = m.stringField(o, "pattern", raw[fPattern], true); err != nil {
		return err
	}
	if ind.PatternType, err = m.constField(o, "pattern_type", raw[fPatternType], true, "stix"); err != nil {
		return err
	}
	if ind.PatternVersion, err = m.constField(o, "pattern_version", raw[fPatternVersion], false, "2.1"); err != nil {
		return err
	}
	if ind.ValidFrom, err = timeField(o, "valid_from", raw[fValidFrom], true, m.strictTime); err != nil {
		return err
	}
	if ind.ValidUntil, err = timeField(o, "valid_until", raw[fValidUntil], false, m.strictTime); err != nil {
		return err
	}
	if !ind.ValidUntil.IsZero() && !ind.ValidUntil.After(ind.ValidFrom) {
		return fieldErr(o, "valid_until", "must be later than valid_from")
	}
	u, err := m.constField(o, "x_threatbus_update", raw[fUpdate], false, string(UpdateRemove), string(UpdateEdit))
	if err != nil {
		return err
	}
	switch ind.Update = Update(u); {
	case raw[fUpdate] == nil:
	case ind.Update == UpdateRemove || ind.Update == UpdateEdit:
	default:
		return fieldErr(o, "x_threatbus_update", "%q is not REMOVE or EDIT", u)
	}
	if ind.PatternType == "stix" {
		if m.check {
			err = checkPattern(ind.Pattern)
		} else {
			ind.Parsed, err = Parse(ind.Pattern)
		}
		if err != nil {
			return &FieldError{Object: o, Field: "pattern", Err: err}
		}
	}
	return nil
}

// NewIndicator creates a STIX 2.1 Indicator with a "stix" pattern, as the bus
// does for MISP attributes. The pattern must parse. Defaults: a UUIDv4 id,
// created = modified = now.
func NewIndicator(pattern string, validFrom time.Time, opts ...Option) (*Indicator, error) {
	b := &builder{object: TypeIndicator, reservedProperties: reserved(
		"pattern", "pattern_type", "pattern_version", "valid_from", "valid_until", "x_threatbus_update")}
	if err := checkPattern(pattern); err != nil {
		return nil, &FieldError{Object: TypeIndicator, Field: "pattern", Err: err}
	}
	if err := b.start(opts); err != nil {
		return nil, err
	}
	if err := checkEmittable(validFrom); err != nil {
		return nil, &FieldError{Object: TypeIndicator, Field: "valid_from", Err: err}
	}
	if !b.validUntil.IsZero() {
		if err := checkEmittable(b.validUntil); err != nil {
			return nil, &FieldError{Object: TypeIndicator, Field: "valid_until", Err: err}
		}
	}
	out := make([]byte, 0, 320+len(pattern))
	out = b.appendCommon(out)
	out = append(out, `,"pattern":`...)
	out = appendString(out, pattern)
	out = append(out, `,"pattern_type":"stix","pattern_version":"2.1","valid_from":`...)
	out = appendString(out, FormatTimestamp(validFrom))
	if !b.validUntil.IsZero() {
		out = append(out, `,"valid_until":`...)
		out = appendString(out, FormatTimestamp(b.validUntil))
	}
	if b.update != UpdateNone {
		out = append(out, `,"x_threatbus_update":`...)
		out = appendString(out, string(b.update))
	}
	out = b.appendExtra(out)
	out = append(out, '}')
	// Decoding what we wrote is the cheapest proof that we only ever emit
	// objects we would accept ourselves.
	ind, err := DecodeIndicator(out)
	if err != nil {
		return nil, fmt.Errorf("stix: built an invalid indicator: %w", err)
	}
	return ind, nil
}
