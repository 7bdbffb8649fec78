package stix

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MatchType is the Threat Bus property x_threatbus_match_type on a Sighting.
type MatchType string

const (
	MatchNone  MatchType = ""      // property absent
	MatchLive  MatchType = "LIVE"  // seen in live traffic
	MatchRetro MatchType = "RETRO" // found by a retrospective search
)

// Sighting is a decoded STIX 2.1 Sighting. As with Indicator, Raw aliases the
// decoded slice and is the message; the fields are a view.
type Sighting struct {
	Common
	SightingOfRef string
	FirstSeen     time.Time // zero when absent
	LastSeen      time.Time // zero when absent
	Count         int       // -1 when absent

	// The Threat Bus custom properties. Indicator and Context alias Raw
	// and are nil when absent.
	Indicator         json.RawMessage // x_threatbus_indicator, a JSON object
	IndicatorValue    string          // x_threatbus_indicator_value
	HasIndicatorValue bool
	MatchType         MatchType       // x_threatbus_match_type
	Source            string          // x_threatbus_source
	Context           json.RawMessage // x_threatbus_sighting_context, any JSON

	Raw []byte
}

// MessageType implements Message.
func (*Sighting) MessageType() string { return TypeSighting }

// Bytes implements Message.
func (s *Sighting) Bytes() []byte { return s.Raw }

// SightedIndicator decodes x_threatbus_indicator. It is not decoded eagerly:
// most sinks only need the id in sighting_of_ref.
func (s *Sighting) SightedIndicator() (*Indicator, error) {
	if s.Indicator == nil {
		return nil, &FieldError{Object: TypeSighting, Field: "x_threatbus_indicator", Err: errMissing}
	}
	ind, err := DecodeIndicator(s.Indicator)
	if err != nil {
		return nil, &FieldError{Object: TypeSighting, Field: "x_threatbus_indicator", Err: err}
	}
	return ind, nil
}

// The sighting's properties follow the indicator's in the field table that
// both share (see object.go).
const (
	fSightingOfRef = numIndicatorFields + iota
	fFirstSeen
	fLastSeen
	fCount
	fTBIndicator
	fTBIndicatorValue
	fTBMatchType
	fTBSource
	fTBContext
	numObjectFields
)

// Object types a sighting cannot be of (STIX 2.1, 5.2: it must reference an
// SDO, and these are SROs or meta objects).
var notSightable = []string{"sighting", "relationship", "bundle", "marking-definition", "language-content"}

// DecodeSighting validates b as a STIX 2.1 Sighting and returns a view of it.
func DecodeSighting(b []byte) (*Sighting, error) {
	var f objectFields
	if err := f.collect(TypeSighting, b, sightingFields, false); err != nil {
		return nil, err
	}
	s := &Sighting{Raw: b}
	if err := s.decode(&f.raw, decodeMode{}); err != nil {
		return nil, err
	}
	return s, nil
}

// decode fills in everything but Raw from the collected properties.
func (s *Sighting) decode(raw *[numObjectFields][]byte, m decodeMode) error {
	s.Count = -1
	if err := s.Common.decode(TypeSighting, raw, m); err != nil {
		return err
	}
	const o = TypeSighting
	var err error
	if s.SightingOfRef, err = m.stringField(o, "sighting_of_ref", raw[fSightingOfRef], true); err != nil {
		return err
	}
	if err := checkIdentifier(s.SightingOfRef, ""); err != nil {
		return &FieldError{Object: o, Field: "sighting_of_ref", Err: err}
	}
	for _, t := range notSightable {
		if strings.HasPrefix(s.SightingOfRef, t+"--") {
			return fieldErr(o, "sighting_of_ref", "must reference a STIX Domain Object, not a %s", t)
		}
	}
	if s.FirstSeen, err = timeField(o, "first_seen", raw[fFirstSeen], false, m.strictTime); err != nil {
		return err
	}
	if s.LastSeen, err = timeField(o, "last_seen", raw[fLastSeen], false, m.strictTime); err != nil {
		return err
	}
	if !s.FirstSeen.IsZero() && !s.LastSeen.IsZero() && s.LastSeen.Before(s.FirstSeen) {
		return fieldErr(o, "last_seen", "is before first_seen")
	}
	if r := raw[fCount]; r != nil {
		n, err := strconv.Atoi(string(r))
		if err != nil || n < 0 || n > 999999999 {
			return fieldErr(o, "count", "must be an integer from 0 to 999999999, got %s", r)
		}
		s.Count = n
	}
	if r := raw[fTBIndicator]; r != nil {
		if r[0] != '{' {
			return fieldErr(o, "x_threatbus_indicator", "must be an object, got %s", jsonKind(r))
		}
		s.Indicator = json.RawMessage(r)
	}
	if s.IndicatorValue, err = m.stringField(o, "x_threatbus_indicator_value", raw[fTBIndicatorValue], false); err != nil {
		return err
	}
	s.HasIndicatorValue = raw[fTBIndicatorValue] != nil
	mt, err := m.constField(o, "x_threatbus_match_type", raw[fTBMatchType], false, string(MatchLive), string(MatchRetro))
	if err != nil {
		return err
	}
	switch s.MatchType = MatchType(mt); {
	case raw[fTBMatchType] == nil:
	case s.MatchType == MatchLive || s.MatchType == MatchRetro:
	default:
		return fieldErr(o, "x_threatbus_match_type", "%q is not LIVE or RETRO", mt)
	}
	if s.Source, err = m.stringField(o, "x_threatbus_source", raw[fTBSource], false); err != nil {
		return err
	}
	if r := raw[fTBContext]; r != nil {
		s.Context = json.RawMessage(r)
	}
	return nil
}

// NewSighting creates a STIX 2.1 Sighting of sightingOfRef (usually an
// indicator id) last seen at lastSeen, as sinks like Zeek report them.
func NewSighting(sightingOfRef string, lastSeen time.Time, opts ...Option) (*Sighting, error) {
	b := &builder{object: TypeSighting, reservedProperties: reserved(
		"sighting_of_ref", "first_seen", "last_seen", "count",
		"x_threatbus_indicator", "x_threatbus_indicator_value", "x_threatbus_match_type",
		"x_threatbus_source", "x_threatbus_sighting_context")}
	if err := checkIdentifier(sightingOfRef, ""); err != nil {
		return nil, &FieldError{Object: TypeSighting, Field: "sighting_of_ref", Err: err}
	}
	if err := b.start(opts); err != nil {
		return nil, err
	}
	if err := checkEmittable(lastSeen); err != nil {
		return nil, &FieldError{Object: TypeSighting, Field: "last_seen", Err: err}
	}
	if !b.firstSeen.IsZero() {
		if err := checkEmittable(b.firstSeen); err != nil {
			return nil, &FieldError{Object: TypeSighting, Field: "first_seen", Err: err}
		}
	}
	out := make([]byte, 0, 384+len(b.indicator)+len(b.context))
	out = b.appendCommon(out)
	out = append(out, `,"sighting_of_ref":`...)
	out = appendString(out, sightingOfRef)
	if !b.firstSeen.IsZero() {
		out = append(out, `,"first_seen":`...)
		out = appendString(out, FormatTimestamp(b.firstSeen))
	}
	out = append(out, `,"last_seen":`...)
	out = appendString(out, FormatTimestamp(lastSeen))
	if b.hasCount {
		out = append(out, `,"count":`...)
		out = strconv.AppendInt(out, int64(b.count), 10)
	}
	if b.indicator != nil {
		out = append(out, `,"x_threatbus_indicator":`...)
		out = append(out, b.indicator...)
	}
	if b.hasIndicatorValue {
		out = append(out, `,"x_threatbus_indicator_value":`...)
		out = appendString(out, b.indicatorValue)
	}
	if b.matchType != MatchNone {
		out = append(out, `,"x_threatbus_match_type":`...)
		out = appendString(out, string(b.matchType))
	}
	if b.source != "" {
		out = append(out, `,"x_threatbus_source":`...)
		out = appendString(out, b.source)
	}
	if b.context != nil {
		out = append(out, `,"x_threatbus_sighting_context":`...)
		out = append(out, b.context...)
	}
	out = b.appendExtra(out)
	out = append(out, '}')
	s, err := DecodeSighting(out)
	if err != nil {
		return nil, fmt.Errorf("stix: built an invalid sighting: %w", err)
	}
	return s, nil
}
