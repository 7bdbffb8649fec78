package stix

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Option customises an object built by NewIndicator or NewSighting. Options
// that only make sense for one of them fail the constructor when given to the
// other, rather than being silently ignored.
type Option struct{ apply func(*builder) error }

func option(f func(*builder) error) Option { return Option{apply: f} }

type extraProp struct {
	name  string
	value []byte
}

type builder struct {
	object string

	id                 string
	created, modified  time.Time
	validUntil         time.Time
	update             Update
	firstSeen          time.Time
	count              int
	hasCount           bool
	indicator          []byte
	indicatorValue     string
	hasIndicatorValue  bool
	matchType          MatchType
	source             string
	context            []byte
	extra              []extraProp
	extraNames         map[string]bool
	reservedProperties map[string]bool
}

func (b *builder) only(object, name string) error {
	if b.object != object {
		return fmt.Errorf("stix: option %s does not apply to %s objects", name, b.object)
	}
	return nil
}

// WithID sets the id instead of generating a UUIDv4. Mappers use it to keep
// the id stable across updates (MISP's attribute UUID becomes the
// indicator's), so that a later REMOVE names the same object.
func WithID(id string) Option {
	return option(func(b *builder) error {
		if err := checkIdentifier(id, b.object); err != nil {
			return &FieldError{Object: b.object, Field: "id", Err: err}
		}
		b.id = id
		return nil
	})
}

// WithCreated sets created (and modified, unless WithModified is given);
// the default is the current time.
func WithCreated(t time.Time) Option {
	return option(func(b *builder) error { b.created = t; return nil })
}

// WithModified sets modified; it must not be before created.
func WithModified(t time.Time) Option {
	return option(func(b *builder) error { b.modified = t; return nil })
}

// WithProperty adds a property the package has no option for (name,
// description, confidence, labels …). value must be valid JSON; it is
// written compacted.
func WithProperty(name string, value json.RawMessage) Option {
	return option(func(b *builder) error {
		if !validPropertyName(name) {
			return fieldErr(b.object, name, "is not a valid STIX property name (a-z, 0-9, _; 3 to 250 characters)")
		}
		if b.reservedProperties[name] {
			return fieldErr(b.object, name, "is set by the constructor or a dedicated option")
		}
		if b.extraNames[name] {
			return fieldErr(b.object, name, "given twice")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, value); err != nil {
			return fieldErr(b.object, name, "value is not valid JSON: %v", err)
		}
		if err := checkPropertyValue(name, buf.Bytes()); err != nil {
			return &FieldError{Object: b.object, Field: name, Err: err}
		}
		if b.extraNames == nil {
			b.extraNames = map[string]bool{}
		}
		b.extraNames[name] = true
		b.extra = append(b.extra, extraProp{name: name, value: buf.Bytes()})
		return nil
	})
}

// WithValidUntil sets an Indicator's valid_until.
func WithValidUntil(t time.Time) Option {
	return option(func(b *builder) error {
		if err := b.only(TypeIndicator, "WithValidUntil"); err != nil {
			return err
		}
		b.validUntil = t
		return nil
	})
}

// WithUpdate sets an Indicator's x_threatbus_update.
func WithUpdate(u Update) Option {
	return option(func(b *builder) error {
		if err := b.only(TypeIndicator, "WithUpdate"); err != nil {
			return err
		}
		if u != UpdateNone && u != UpdateRemove && u != UpdateEdit {
			return fieldErr(TypeIndicator, "x_threatbus_update", "%q is not REMOVE or EDIT", string(u))
		}
		b.update = u
		return nil
	})
}

// WithFirstSeen sets a Sighting's first_seen.
func WithFirstSeen(t time.Time) Option {
	return option(func(b *builder) error {
		if err := b.only(TypeSighting, "WithFirstSeen"); err != nil {
			return err
		}
		b.firstSeen = t
		return nil
	})
}

// WithCount sets a Sighting's count (0 to 999,999,999).
func WithCount(n int) Option {
	return option(func(b *builder) error {
		if err := b.only(TypeSighting, "WithCount"); err != nil {
			return err
		}
		if n < 0 || n > 999999999 {
			return fieldErr(TypeSighting, "count", "%d is outside 0..999999999", n)
		}
		b.count, b.hasCount = n, true
		return nil
	})
}

// WithSightedIndicator embeds the whole sighted indicator
// (x_threatbus_indicator), which must be a JSON object.
func WithSightedIndicator(indicator json.RawMessage) Option {
	return option(func(b *builder) error {
		if err := b.only(TypeSighting, "WithSightedIndicator"); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, indicator); err != nil {
			return fieldErr(TypeSighting, "x_threatbus_indicator", "is not valid JSON: %v", err)
		}
		b.indicator = buf.Bytes()
		return nil
	})
}

// WithIndicatorValue sets x_threatbus_indicator_value, the matched value,
// for sinks that do not know the full indicator.
func WithIndicatorValue(v string) Option {
	return option(func(b *builder) error {
		if err := b.only(TypeSighting, "WithIndicatorValue"); err != nil {
			return err
		}
		b.indicatorValue, b.hasIndicatorValue = v, true
		return nil
	})
}

// WithMatchType sets x_threatbus_match_type (LIVE or RETRO).
func WithMatchType(m MatchType) Option {
	return option(func(b *builder) error {
		if err := b.only(TypeSighting, "WithMatchType"); err != nil {
			return err
		}
		if m != MatchNone && m != MatchLive && m != MatchRetro {
			return fieldErr(TypeSighting, "x_threatbus_match_type", "%q is not LIVE or RETRO", string(m))
		}
		b.matchType = m
		return nil
	})
}

// WithSource sets x_threatbus_source, the tool that saw the indicator.
func WithSource(s string) Option {
	return option(func(b *builder) error {
		if err := b.only(TypeSighting, "WithSource"); err != nil {
			return err
		}
		b.source = s
		return nil
	})
}

// WithContext sets x_threatbus_sighting_context to any JSON value.
func WithContext(ctx json.RawMessage) Option {
	return option(func(b *builder) error {
		if err := b.only(TypeSighting, "WithContext"); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, ctx); err != nil {
			return fieldErr(TypeSighting, "x_threatbus_sighting_context", "is not valid JSON: %v", err)
		}
		if err := checkPropertyValue("x_threatbus_sighting_context", buf.Bytes()); err != nil {
			return &FieldError{Object: TypeSighting, Field: "x_threatbus_sighting_context", Err: err}
		}
		b.context = buf.Bytes()
		return nil
	})
}

// checkPropertyValue applies STIX's rules for a top-level property value:
// no null, no empty list, and the _bin / _hex name suffixes fix the type.
// Received objects are not held to this (we forward what others wrote), but
// what the bus writes must pass the OASIS schemas.
func checkPropertyValue(name string, v []byte) error {
	switch {
	case string(v) == "null":
		return errors.New("STIX forbids null values; leave the property out instead")
	case string(v) == "[]":
		return errors.New("STIX forbids empty lists; leave the property out instead")
	case strings.HasSuffix(name, "_bin"):
		if s, ok := decodeString(v); !ok || !validBase64(s) {
			return errors.New("a _bin property must be a base64 string")
		}
	case strings.HasSuffix(name, "_hex"):
		s, ok := decodeString(v)
		if _, err := hex.DecodeString(s); !ok || err != nil || s == "" {
			return errors.New("a _hex property must be a string of hex digit pairs")
		}
	}
	return nil
}

func validPropertyName(n string) bool {
	if len(n) < 3 || len(n) > 250 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return 'a' <= n[0] && n[0] <= 'z'
}

// start applies the options and fills in id and timestamps.
func (b *builder) start(opts []Option) error {
	for _, o := range opts {
		if o.apply == nil {
			continue
		}
		if err := o.apply(b); err != nil {
			return err
		}
	}
	if b.id == "" {
		id, err := newID(b.object)
		if err != nil {
			return err
		}
		b.id = id
	}
	if b.created.IsZero() {
		b.created = time.Now()
	}
	if b.modified.IsZero() {
		b.modified = b.created
	}
	if err := checkEmittable(b.created); err != nil {
		return &FieldError{Object: b.object, Field: "created", Err: err}
	}
	if err := checkEmittable(b.modified); err != nil {
		return &FieldError{Object: b.object, Field: "modified", Err: err}
	}
	// Compare what is written, not what was given: sub-millisecond
	// differences vanish in the output.
	if FormatTimestamp(b.modified) < FormatTimestamp(b.created) {
		return fieldErr(b.object, "modified", "is before created")
	}
	return nil
}

func (b *builder) appendCommon(dst []byte) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, b.object)
	dst = append(dst, `,"spec_version":"2.1","id":`...)
	dst = appendString(dst, b.id)
	dst = append(dst, `,"created":`...)
	dst = appendString(dst, FormatTimestamp(b.created))
	dst = append(dst, `,"modified":`...)
	return appendString(dst, FormatTimestamp(b.modified))
}

func (b *builder) appendExtra(dst []byte) []byte {
	for _, p := range b.extra {
		dst = append(dst, ',')
		dst = appendString(dst, p.name)
		dst = append(dst, ':')
		dst = append(dst, p.value...)
	}
	return dst
}

func reserved(names ...string) map[string]bool {
	m := make(map[string]bool, len(names)+5)
	for _, n := range append(names, "type", "spec_version", "id", "created", "modified") {
		m[n] = true
	}
	return m
}
