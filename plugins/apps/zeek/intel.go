package zeek

import (
	"net/netip"
	"strings"
	"time"

	"github.com/threatbus/threatbus/messages/stix"
	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

// intelItem is a Tenzir::Intelligence record.
type intelItem struct {
	TS        time.Time
	ID        string
	Type      string
	Indicator string
	Operation string
}

// event is the Tenzir::intel event carrying the item: one record argument,
// its fields in declaration order.
func (it intelItem) event(name string) bj.Event {
	return bj.NewEvent(name, bj.Vector{
		bj.NewTimestamp(it.TS), bj.String(it.ID), bj.String(it.Type), bj.String(it.Indicator), bj.String(it.Operation),
	})
}

// intelTypes maps the canonical object paths of point IoCs (stix.ObjectPath
// Canonical: hash names in the STIX vocabulary, whatever their spelling on
// input) to Zeek intel types.
var intelTypes = map[string]string{
	"domain-name:value":             "DOMAIN",
	"email-addr:value":              "EMAIL",
	"file:name":                     "FILE_NAME",
	"file:hashes.MD5":               "FILE_HASH",
	"file:hashes.SHA-1":             "FILE_HASH",
	"file:hashes.SHA-256":           "FILE_HASH",
	"file:hashes.SHA-512":           "FILE_HASH",
	"file:hashes.SHA3-256":          "FILE_HASH",
	"file:hashes.SHA3-512":          "FILE_HASH",
	"file:hashes.SSDEEP":            "FILE_HASH",
	"file:hashes.TLSH":              "FILE_HASH",
	"ipv4-addr:value":               "ADDR", // SUBNET for a CIDR
	"ipv6-addr:value":               "ADDR",
	"software:name":                 "SOFTWARE",
	"url:value":                     "URL",
	"user-account:user_id":          "USER_NAME",
	"user-account:account_login":    "USER_NAME",
	"x509-certificate:hashes.SHA-1": "CERT_HASH", // Zeek hashes certificates with SHA-1 only
}

// pathKey joins a path of plain keys: "file:hashes.SHA-256"; "" when the
// path has index steps.
func pathKey(p stix.ObjectPath) string {
	var b strings.Builder
	b.WriteString(p.Type)
	b.WriteByte(':')
	for i, s := range p.Steps {
		if s.Kind != stix.StepKey {
			return ""
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.Key)
	}
	return b.String()
}

// mapIndicator turns a STIX indicator into a Zeek intel item, or says why
// it cannot be one (an na* reason).
func mapIndicator(payload []byte) (intelItem, string) {
	ind, err := stix.DecodeIndicator(payload)
	if err != nil {
		return intelItem{}, naInvalid
	}
	if ind.PatternType != "stix" || ind.Parsed == nil {
		return intelItem{}, naPatternType
	}
	path, value, ok := stix.PointIoC(ind.Parsed)
	if !ok || !stringComparison(ind.Parsed) {
		return intelItem{}, naNotPoint
	}
	typ, ok := intelTypes[pathKey(path)]
	if !ok {
		return intelItem{}, naUnsupported
	}
	switch typ {
	case "ADDR":
		if strings.Contains(value, "/") {
			p, err := netip.ParsePrefix(value)
			if err != nil {
				return intelItem{}, naValue
			}
			typ, value = "SUBNET", p.String()
		} else if a, err := netip.ParseAddr(value); err != nil || a.Zone() != "" {
			return intelItem{}, naValue
		}
	case "URL":
		value = stripScheme(value)
	}
	// Broker's JSON reader has no \u escapes, so control characters other
	// than \b \f \n \r \t cannot reach Zeek; no indicator needs them.
	if value == "" || !bj.BrokerSafe(value) {
		return intelItem{}, naValue
	}
	op := "ADD"
	if ind.Update == stix.UpdateRemove {
		op = "REMOVE"
	}
	return intelItem{TS: ind.Created, ID: ind.ID, Type: typ, Indicator: value, Operation: op}, ""
}

// stringComparison reports whether the comparison of a point IoC compares
// with a string literal: [domain-name:value = 5] is not an indicator Zeek
// can match.
func stringComparison(p *stix.Pattern) bool {
	var obs stix.ObservationExpr = p.Root
	for {
		g, ok := obs.(*stix.ObservationGroup)
		if !ok {
			break
		}
		obs = g.Expr
	}
	o, ok := obs.(*stix.Observation)
	if !ok {
		return false
	}
	var cmp stix.ComparisonExpr = o.Expr
	for {
		g, ok := cmp.(*stix.ComparisonGroup)
		if !ok {
			break
		}
		cmp = g.Expr
	}
	c, ok := cmp.(*stix.Comparison)
	return ok && c.Value.Kind == stix.LitString
}

// stripScheme removes "scheme://" as Zeek's URL intel has none:
// "https://a/b" is "a/b".
func stripScheme(u string) string {
	i := strings.Index(u, "://")
	if i <= 0 {
		return u
	}
	scheme := u[:i]
	for j := 0; j < len(scheme); j++ {
		c := scheme[j]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !(letter || j > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return u
		}
	}
	return u[i+3:]
}
