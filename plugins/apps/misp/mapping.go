package misp

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/threatbus/threatbus/messages/stix"
)

// Causes of attributes that do not become indicators; they are the keys of
// Stats.Skipped.
const (
	causeMalformed        = "malformed"         // not an attribute message
	causeUnknownAction    = "unknown_action"    // action is not add, edit, soft-delete or delete
	causeToIDs            = "to_ids_false"      // added (or found by a search) without the IDS flag
	causeDeleted          = "deleted"           // a search returned a deleted attribute
	causeFiltered         = "filtered"          // no filter matched
	causeUnmappable       = "unmappable_type"   // a type without a STIX mapping
	causeInvalidValue     = "invalid_value"     // the value does not fit its type
	causeInvalidUUID      = "invalid_uuid"      // the uuid cannot be a STIX id
	causeInvalidTimestamp = "invalid_timestamp" // the timestamp is out of range
	causePublish          = "publish_failed"    // the bus refused the indicator
)

// skip is why an attribute did not become an indicator.
type skip struct {
	cause string
	err   error
}

func (s *skip) Error() string { return s.cause + ": " + s.err.Error() }
func (s *skip) Unwrap() error { return s.err }

func skipf(cause, format string, args ...any) *skip {
	return &skip{cause: cause, err: fmt.Errorf(format, args...)}
}

// valueKind says how a value is checked and written into a pattern.
type valueKind uint8

const (
	kindString valueKind = iota
	kindIP               // ipv4-addr or ipv6-addr, by the value
	kindMAC              // lower-case, colon-delimited
	kindAS               // integer, "AS" prefix dropped
)

// target is where one MISP type goes in a pattern.
type target struct {
	object string
	path   []string
	kind   valueKind
}

// simpleTypes is the mapping table of shared/specs/misp.md.
var simpleTypes = map[string]target{
	"ip":                      {object: "ipv4-addr", path: []string{"value"}, kind: kindIP},
	"ip-src":                  {object: "ipv4-addr", path: []string{"value"}, kind: kindIP},
	"ip-dst":                  {object: "ipv4-addr", path: []string{"value"}, kind: kindIP},
	"hostname":                {object: "domain-name", path: []string{"value"}},
	"domain":                  {object: "domain-name", path: []string{"value"}},
	"mac-address":             {object: "mac-addr", path: []string{"value"}, kind: kindMAC},
	"mac-eui-64":              {object: "mac-addr", path: []string{"value"}, kind: kindMAC},
	"email":                   {object: "email-addr", path: []string{"value"}},
	"email-src":               {object: "email-addr", path: []string{"value"}},
	"email-dst":               {object: "email-addr", path: []string{"value"}},
	"eppn":                    {object: "email-addr", path: []string{"value"}},
	"url":                     {object: "url", path: []string{"value"}},
	"uri":                     {object: "url", path: []string{"value"}},
	"AS":                      {object: "autonomous-system", path: []string{"number"}, kind: kindAS},
	"md5":                     {object: "file", path: []string{"hashes", "MD5"}},
	"sha1":                    {object: "file", path: []string{"hashes", "SHA-1"}},
	"sha256":                  {object: "file", path: []string{"hashes", "SHA-256"}},
	"sha512":                  {object: "file", path: []string{"hashes", "SHA-512"}},
	"ssdeep":                  {object: "file", path: []string{"hashes", "SSDEEP"}},
	"tlsh":                    {object: "file", path: []string{"hashes", "TLSH"}},
	"filename":                {object: "file", path: []string{"name"}},
	"x509-fingerprint-md5":    {object: "x509-certificate", path: []string{"hashes", "MD5"}},
	"x509-fingerprint-sha1":   {object: "x509-certificate", path: []string{"hashes", "SHA-1"}},
	"x509-fingerprint-sha256": {object: "x509-certificate", path: []string{"hashes", "SHA-256"}},
}

const typeSTIXPattern = "stix2-pattern"

// mappableType reports whether attributes of MISP type t can become
// indicators: a type of the table, stix2-pattern, or a compound "a|b" of
// two table types.
func mappableType(t string) bool {
	if t == typeSTIXPattern {
		return true
	}
	if _, ok := simpleTypes[t]; ok {
		return true
	}
	a, b, ok := strings.Cut(t, "|")
	if !ok || strings.Contains(b, "|") {
		return false
	}
	_, okA := simpleTypes[a]
	_, okB := simpleTypes[b]
	return okA && okB
}

// patternFor maps one attribute's type and value to a STIX pattern that
// parses. value1/value2 are MISP's split of a compound value.
func patternFor(typ, value, value1, value2 string) (string, error) {
	if typ == typeSTIXPattern {
		return stixPatternValue(value)
	}
	if tgt, ok := simpleTypes[typ]; ok {
		if value == "" {
			value = value1
		}
		p, err := observation(tgt, value)
		if err != nil {
			return "", err
		}
		return p.String(), nil
	}
	ta, tb, compound := strings.Cut(typ, "|")
	if !compound || !mappableType(typ) {
		return "", skipf(causeUnmappable, "MISP type %q has no STIX mapping", typ)
	}
	va, vb := value1, value2
	if va == "" || vb == "" {
		// Split at the last '|': a file name may contain one, a hash or
		// an address does not.
		i := strings.LastIndexByte(value, '|')
		if i < 0 {
			return "", skipf(causeInvalidValue, "%s value %.80q is not of the form a|b", typ, value)
		}
		va, vb = value[:i], value[i+1:]
	}
	pa, err := observation(simpleTypes[ta], va)
	if err != nil {
		return "", err
	}
	pb, err := observation(simpleTypes[tb], vb)
	if err != nil {
		return "", err
	}
	// The spec's form: one observation per part, joined by AND.
	s := pa.String() + " AND " + pb.String()
	if _, err := stix.Parse(s); err != nil {
		return "", skipf(causeInvalidValue, "%s: %v", typ, err)
	}
	return s, nil
}

// observation builds [object:path = value] for one table type.
func observation(tgt target, value string) (*stix.Pattern, error) {
	if value == "" {
		return nil, skipf(causeInvalidValue, "empty %s value", tgt.object)
	}
	var cmp *stix.Comparison
	var err error
	switch tgt.kind {
	case kindIP:
		obj, ok := ipObject(value)
		if !ok {
			return nil, skipf(causeInvalidValue, "%.80q is not an IP address or CIDR block", value)
		}
		cmp, err = stix.Equals(obj, tgt.path, value)
	case kindMAC:
		cmp, err = stix.Equals(tgt.object, tgt.path, normalizeMAC(value))
	case kindAS:
		n, ok := asNumber(value)
		if !ok {
			return nil, skipf(causeInvalidValue, "%.80q is not an autonomous system number", value)
		}
		var path stix.ObjectPath
		if path, err = stix.NewObjectPath(tgt.object, tgt.path...); err == nil {
			num := strconv.FormatUint(uint64(n), 10)
			cmp = &stix.Comparison{Path: path, Op: stix.OpEqual, Value: stix.Literal{Kind: stix.LitInt, Raw: num, Value: num}}
		}
	default:
		cmp, err = stix.Equals(tgt.object, tgt.path, value)
	}
	if err != nil {
		return nil, skipf(causeInvalidValue, "%v", err)
	}
	p, err := stix.NewPattern(cmp)
	if err != nil {
		// A hash of the wrong length, a control character …: the STIX
		// pattern validator rejects it, so it is not published.
		return nil, skipf(causeInvalidValue, "%v", err)
	}
	return p, nil
}

// ipObject says whether v (an address or a CIDR block) is IPv4 or IPv6.
func ipObject(v string) (string, bool) {
	var addr netip.Addr
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return "", false
		}
		addr = p.Addr()
	} else {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return "", false
		}
		addr = a
	}
	if addr.Is4() {
		return "ipv4-addr", true
	}
	return "ipv6-addr", true
}

// normalizeMAC writes a MAC address the way STIX requires: lower case and
// colon-delimited (MISP accepts 00-1A-2B-… as well).
func normalizeMAC(v string) string {
	v = strings.ToLower(v)
	if len(v) == 17 || len(v) == 23 {
		v = strings.ReplaceAll(v, "-", ":")
	}
	return v
}

// asNumber reads "AS64496", "as64496" or "64496".
func asNumber(v string) (uint32, bool) {
	v = strings.TrimSpace(v)
	if len(v) > 2 && strings.EqualFold(v[:2], "as") {
		v = v[2:]
	}
	n, err := strconv.ParseUint(v, 10, 32)
	return uint32(n), err == nil
}

// stixPatternValue is a stix2-pattern attribute's value, wrapped in [...]
// when MISP stored the bare comparison.
func stixPatternValue(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", skipf(causeInvalidValue, "empty stix2-pattern")
	}
	_, err := stix.Parse(v)
	if err == nil {
		return v, nil
	}
	if !strings.HasPrefix(v, "[") {
		w := "[" + v + "]"
		if _, err2 := stix.Parse(w); err2 == nil {
			return w, nil
		}
	}
	return "", skipf(causeInvalidValue, "stix2-pattern: %v", err)
}

// indicatorFor builds the indicator of an attribute: its id is the
// attribute's UUID, so that a later REMOVE names the same object, and its
// timestamps are the attribute's (UTC). now stands in for a missing
// timestamp.
func indicatorFor(a *attribute, update stix.Update, now time.Time) (*stix.Indicator, error) {
	id, ok := indicatorID(string(a.UUID))
	if !ok {
		return nil, skipf(causeInvalidUUID, "attribute uuid %.80q is not a UUID", string(a.UUID))
	}
	ts := now.UTC().Truncate(time.Second)
	if a.Timestamp.set {
		if a.Timestamp.v < 0 || a.Timestamp.v > maxUnix {
			return nil, skipf(causeInvalidTimestamp, "timestamp %d is out of range", a.Timestamp.v)
		}
		ts = time.Unix(a.Timestamp.v, 0).UTC()
	}
	pattern, err := patternFor(string(a.Type), string(a.Value), string(a.Value1), string(a.Value2))
	if err != nil {
		return nil, err
	}
	opts := []stix.Option{stix.WithID(id), stix.WithCreated(ts), stix.WithModified(ts)}
	if update != stix.UpdateNone {
		opts = append(opts, stix.WithUpdate(update))
	}
	ind, err := stix.NewIndicator(pattern, ts, opts...)
	if err != nil {
		return nil, skipf(causeInvalidValue, "%v", err)
	}
	return ind, nil
}

// maxUnix is 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
const maxUnix = 253402300799

// indicatorID turns a MISP attribute UUID into a STIX indicator id. STIX
// accepts RFC 4122 UUIDs of versions 1 to 5.
func indicatorID(u string) (string, bool) {
	u = strings.ToLower(strings.TrimSpace(u))
	if len(u) != 36 {
		return "", false
	}
	p, err := uuid.Parse(u)
	if err != nil || p.Variant() != uuid.RFC4122 || p.Version() < 1 || p.Version() > 5 {
		return "", false
	}
	return "indicator--" + u, true
}
