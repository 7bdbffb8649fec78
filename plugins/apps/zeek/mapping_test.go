package zeek

import (
	"encoding/json"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages/stix"
	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

func TestMapIndicator(t *testing.T) {
	for _, c := range []struct {
		pattern string
		typ     string // "" = not applicable
		value   string
		reason  string
	}{
		{"[domain-name:value = 'evil.com']", "DOMAIN", "evil.com", ""},
		{"[email-addr:value = 'a@b.example']", "EMAIL", "a@b.example", ""},
		{"[file:name = 'a b.exe']", "FILE_NAME", "a b.exe", ""},
		// Hash names in any spelling, quoted or not.
		{"[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']", "FILE_HASH", "d41d8cd98f00b204e9800998ecf8427e", ""},
		{"[file:hashes.'md5' = 'd41d8cd98f00b204e9800998ecf8427e']", "FILE_HASH", "d41d8cd98f00b204e9800998ecf8427e", ""},
		{"[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']", "FILE_HASH", "da39a3ee5e6b4b0d3255bfef95601890afd80709", ""},
		{"[file:hashes.sha1 = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']", "FILE_HASH", "da39a3ee5e6b4b0d3255bfef95601890afd80709", ""},
		{"[file:hashes.SHA256 = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']", "FILE_HASH", "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f", ""},
		{"[file:hashes.'sha-512' = '" + strings.Repeat("ab", 64) + "']", "FILE_HASH", strings.Repeat("ab", 64), ""},
		{"[file:hashes.'SHA3-256' = '" + strings.Repeat("cd", 32) + "']", "FILE_HASH", strings.Repeat("cd", 32), ""},
		{"[file:hashes.'SHA3-512' = '" + strings.Repeat("ef", 64) + "']", "FILE_HASH", strings.Repeat("ef", 64), ""},
		{"[file:hashes.SSDEEP = '3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C']", "FILE_HASH", "3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C", ""},
		{"[file:hashes.tlsh = 'T1A2B3']", "FILE_HASH", "T1A2B3", ""},
		{"[ipv4-addr:value = '6.6.6.6']", "ADDR", "6.6.6.6", ""},
		{"[ipv4-addr:value = '10.0.0.0/8']", "SUBNET", "10.0.0.0/8", ""},
		{"[ipv6-addr:value = '2001:db8::/32']", "SUBNET", "2001:db8::/32", ""},
		{"[ipv6-addr:value = '::1']", "ADDR", "::1", ""},
		{"[software:name = 'x']", "SOFTWARE", "x", ""},
		{"[url:value = 'https://a/b']", "URL", "a/b", ""},
		{"[url:value = 'hxxp+s.1-x://a/b?c=d://e']", "URL", "a/b?c=d://e", ""},
		{"[url:value = 'evil.example/path']", "URL", "evil.example/path", ""},
		{"[url:value = '://a']", "URL", "://a", ""},
		{"[user-account:user_id = 'root']", "USER_NAME", "root", ""},
		{"[user-account:account_login = 'admin']", "USER_NAME", "admin", ""},
		{"[x509-certificate:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']", "CERT_HASH", "da39a3ee5e6b4b0d3255bfef95601890afd80709", ""},
		{"(([domain-name:value = 'grouped.example']))", "DOMAIN", "grouped.example", ""},
		{"[(domain-name:value = 'grouped.example')]", "DOMAIN", "grouped.example", ""},

		{"[user:user_id = 'root']", "", "", naUnsupported}, // what the original looked for
		{"[x509-certificate:hashes.'SHA-256' = '" + strings.Repeat("ab", 32) + "']", "", "", naUnsupported},
		{"[file:hashes.'SHA-224' = '" + strings.Repeat("ab", 28) + "']", "", "", naUnsupported},
		{"[mac-addr:value = 'aa:bb:cc:dd:ee:ff']", "", "", naUnsupported},
		{"[network-traffic:dst_ref.value = '6.6.6.6']", "", "", naUnsupported},
		{"[file:extensions.'x'[0] = 'a']", "", "", naUnsupported},
		{"[domain-name:value = 'a' OR domain-name:value = 'b']", "", "", naNotPoint},
		{"[domain-name:value != 'a']", "", "", naNotPoint},
		{"[domain-name:value LIKE 'a%']", "", "", naNotPoint},
		{"[domain-name:value = 'a'] AND [domain-name:value = 'b']", "", "", naNotPoint},
		{"[domain-name:value = 'a'] WITHIN 5 SECONDS", "", "", naNotPoint},
		{"[domain-name:value = 5]", "", "", naNotPoint},
		{"[ipv4-addr:value = '1.2.3']", "", "", naValue},
		{"[ipv4-addr:value = '1.2.3.4/33']", "", "", naValue},
		{"[ipv6-addr:value = 'fe80::1%eth0']", "", "", naValue},
		{"[domain-name:value = '']", "", "", naValue},
		{"[domain-name:value = 'a\x01b']", "", "", naValue},
		{"[url:value = 'https://']", "", "", naValue},
	} {
		ind, err := stix.NewIndicator(c.pattern, indicatorTime, stix.WithCreated(indicatorTime))
		if err != nil {
			t.Fatalf("%s: %v", c.pattern, err)
		}
		item, reason := mapIndicator(ind.Raw)
		if reason != c.reason {
			t.Errorf("%s: reason %q, want %q", c.pattern, reason, c.reason)
			continue
		}
		if reason != "" {
			continue
		}
		want := intelItem{TS: indicatorTime, ID: ind.ID, Type: c.typ, Indicator: c.value, Operation: "ADD"}
		if item != want {
			t.Errorf("%s: got %+v, want %+v", c.pattern, item, want)
		}
	}
}

func TestMapIndicatorOperationsAndInput(t *testing.T) {
	for u, op := range map[stix.Update]string{stix.UpdateRemove: "REMOVE", stix.UpdateEdit: "ADD", stix.UpdateNone: "ADD"} {
		ind, err := stix.NewIndicator("[domain-name:value = 'a.example']", indicatorTime, stix.WithUpdate(u))
		if err != nil {
			t.Fatal(err)
		}
		if item, reason := mapIndicator(ind.Raw); reason != "" || item.Operation != op {
			t.Errorf("x_threatbus_update %q: got %+v %q", u, item, reason)
		}
	}
	// The shared test data: an OpenCTI-style indicator (unknown properties)
	// and a REMOVE.
	for file, want := range map[string]intelItem{
		"stix/indicator-domain.json":        {Type: "DOMAIN", Indicator: "example.com", Operation: "ADD"},
		"stix/indicator-remove.json":        {Type: "DOMAIN", Indicator: "example.com", Operation: "REMOVE"},
		"stix/indicator-opencti-style.json": {Type: "ADDR", Indicator: "198.51.100.23", Operation: "ADD"},
	} {
		item, reason := mapIndicator(readFile(t, testdata+"/"+file))
		if reason != "" || item.Type != want.Type || item.Indicator != want.Indicator || item.Operation != want.Operation {
			t.Errorf("%s: got %+v %q", file, item, reason)
		}
	}
	for name, b := range map[string]string{
		"not JSON":   `{`,
		"a sighting": string(readFile(t, testdata+"/stix/sighting-zeek.json")),
		"no pattern": `{"type":"indicator","spec_version":"2.1","id":"indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb","created":"2021-01-15T15:29:05.000Z","modified":"2021-01-15T15:29:05.000Z"}`,
	} {
		if _, reason := mapIndicator([]byte(b)); reason != naInvalid {
			t.Errorf("%s: reason %q", name, reason)
		}
	}
	sigma := `{"type":"indicator","spec_version":"2.1","id":"indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb","created":"2021-01-15T15:29:05.000Z","modified":"2021-01-15T15:29:05.000Z","pattern":"title: x","pattern_type":"sigma","valid_from":"2021-01-15T15:29:05.000Z"}`
	if _, reason := mapIndicator([]byte(sigma)); reason != naPatternType {
		t.Errorf("sigma: reason %q", reason)
	}
}

// TestIntelEventMatchesVector: the event the bus builds for the spec's
// example is the test vector, byte for byte.
func TestIntelEventMatchesVector(t *testing.T) {
	item := intelItem{TS: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), ID: "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06",
		Type: "DOMAIN", Indicator: "evil.com", Operation: "ADD"}
	b, err := bj.EncodeEvent("stix2/indicatorabcdefghij", item.event("Tenzir::intel"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(readFile(t, testdata+"/zeek-websocket/tenzir-intel-event.json")))
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
}

func TestMapSighting(t *testing.T) {
	const id = "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06"
	ts := bj.NewTimestamp(time.Date(2021, 3, 1, 12, 0, 5, 123e6, time.UTC))
	// The test vector from Zeek 8, metadata and all.
	m, err := bj.Decode(readFile(t, testdata+"/zeek-websocket/tenzir-sighting-event.json"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := bj.EventOf(m.(*bj.DataMessage).Data)
	if err != nil {
		t.Fatal(err)
	}
	b, cause, err := mapSighting(ev, "zeek")
	if err != nil {
		t.Fatalf("%s: %v", cause, err)
	}
	s, err := stix.DecodeSighting(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.SightingOfRef != id || !s.LastSeen.Equal(ts.Time) || s.Source != "zeek" || string(s.Context) != `{"noisy":false}` {
		t.Errorf("got %s", b)
	}
	// Compared with the shared example of a Zeek sighting, only what the
	// bus makes up itself (id, created, modified) differs.
	var got, want map[string]any
	_ = json.Unmarshal(b, &got)
	_ = json.Unmarshal(readFile(t, testdata+"/stix/sighting-zeek.json"), &want)
	for _, k := range []string{"id", "created", "modified"} {
		delete(got, k)
		delete(want, k)
	}
	if gb, _ := json.Marshal(got); string(gb) != mustJSON(t, want) {
		t.Errorf("got %s, want %s", gb, mustJSON(t, want))
	}
	validateSighting(t, b)

	for name, c := range map[string]struct {
		args   []bj.Value
		source string
		cause  string
		check  func([]byte) bool
	}{
		"two args":           {args: []bj.Value{ts, bj.String(id)}, cause: rejBadSighting},
		"ts a string":        {args: []bj.Value{bj.String("now"), bj.String(id), bj.Table{}}, cause: rejBadSighting},
		"id a count":         {args: []bj.Value{ts, bj.Count(1), bj.Table{}}, cause: rejBadSighting},
		"id not STIX":        {args: []bj.Value{ts, bj.String("evil.com"), bj.Table{}}, cause: rejInvalidSight},
		"id a relationship":  {args: []bj.Value{ts, bj.String("relationship--5e1f2787-fcfc-4718-a58a-00b4c0a82f06"), bj.Table{}}, cause: rejInvalidSight},
		"unencodable time":   {args: []bj.Value{ts, bj.String(id), bj.Vector{bj.NewTimestamp(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}}, cause: rejBadSighting},
		"no context":         {args: []bj.Value{ts, bj.String(id), bj.None{}}, check: func(b []byte) bool { return jsonField(t, b, "x_threatbus_sighting_context") == nil }},
		"empty list context": {args: []bj.Value{ts, bj.String(id), bj.Vector{}}, check: func(b []byte) bool { return jsonField(t, b, "x_threatbus_sighting_context") == nil }},
		"no source": {args: []bj.Value{ts, bj.String(id), bj.Table{}}, check: func(b []byte) bool {
			return jsonField(t, b, "x_threatbus_source") == nil && string(jsonField(t, b, "x_threatbus_sighting_context")) == "{}"
		}},
		"own source": {args: []bj.Value{ts, bj.String(id), bj.Table{}}, source: "zeek-dmz", check: func(b []byte) bool { return string(jsonField(t, b, "x_threatbus_source")) == `"zeek-dmz"` }},
	} {
		src := c.source
		if src == "" && name != "no source" {
			src = "zeek"
		}
		b, cause, err := mapSighting(bj.NewEvent("Tenzir::sighting", c.args...), src)
		if cause != c.cause || (c.cause == "") != (err == nil) {
			t.Errorf("%s: cause %q, error %v; want %q", name, cause, err, c.cause)
			continue
		}
		if c.check != nil && !c.check(b) {
			t.Errorf("%s: got %s", name, b)
		}
		if err == nil {
			validateSighting(t, b)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestContextJSON(t *testing.T) {
	for want, v := range map[string]bj.Value{
		`{"noisy":true,"n":3,"i":-4,"r":0.5,"s":"a\"b","e":"Intel::ADDR"}`: bj.Table{
			{Key: bj.String("noisy"), Value: bj.Boolean(true)}, {Key: bj.String("n"), Value: bj.Count(3)},
			{Key: bj.String("i"), Value: bj.Integer(-4)}, {Key: bj.String("r"), Value: bj.Real(0.5)},
			{Key: bj.String("s"), Value: bj.String(`a"b`)}, {Key: bj.String("e"), Value: bj.EnumValue("Intel::ADDR")},
		},
		`{"big":18446744073709551615}`:                  bj.Table{{Key: bj.String("big"), Value: bj.Count(math.MaxUint64)}},
		`[[1,"a"],[2,"b"]]`:                             bj.Table{{Key: bj.Count(1), Value: bj.String("a")}, {Key: bj.Count(2), Value: bj.String("b")}},
		`[["k",1],["k",2]]`:                             bj.Table{{Key: bj.String("k"), Value: bj.Count(1)}, {Key: bj.String("k"), Value: bj.Count(2)}},
		`["1.2.3.4","10.0.0.0/8","80/tcp",null]`:        bj.Set{bj.NewAddress(netip.MustParseAddr("1.2.3.4")), bj.NewSubnet(netip.MustParsePrefix("10.0.0.0/8")), bj.Port{Number: 80, Protocol: bj.ProtocolTCP}, bj.None{}},
		`["2021-03-01T12:00:05.123Z",1.5,"NaN","-Inf"]`: bj.Vector{bj.NewTimestamp(time.Date(2021, 3, 1, 12, 0, 5, 123e6, time.UTC)), bj.Timespan(1500 * time.Millisecond), bj.Real(math.NaN()), bj.Real(math.Inf(-1))},
		`{}`: bj.Table{},
	} {
		b, err := contextJSON(nil, v)
		if err != nil || string(b) != want || !json.Valid(b) {
			t.Errorf("got %s (%v), want %s", b, err, want)
		}
	}
}

func TestP2P(t *testing.T) {
	seen := map[string]bool{}
	letters := map[byte]int{}
	for range 2000 {
		p, err := newP2P("stix2/indicator")
		if err != nil {
			t.Fatal(err)
		}
		suffix, ok := strings.CutPrefix(p, "stix2/indicator")
		if !ok || len(suffix) != 10 || strings.Trim(suffix, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("p2p topic %q", p)
		}
		if seen[p] {
			t.Fatalf("p2p topic %q twice", p)
		}
		seen[p] = true
		for i := 0; i < len(suffix); i++ {
			letters[suffix[i]]++
		}
	}
	// 20000 letters: each of 26 expected ~769 times.
	for c := byte('a'); c <= 'z'; c++ {
		if n := letters[c]; n < 550 || n > 1000 {
			t.Errorf("letter %c %d times in 20000", c, n)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	prevCap := time.Duration(0)
	for i := range 40 {
		d := b.next()
		capd := min(100*time.Millisecond<<min(i, 30), 2*time.Second)
		if d < capd/2 || d > capd {
			t.Fatalf("attempt %d: %s outside [%s, %s]", i, d, capd/2, capd)
		}
		if capd < prevCap {
			t.Fatalf("cap shrank")
		}
		prevCap = capd
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %s", d)
	}
	// Jitter: not every wait is the same.
	b = backoff{min: time.Second, max: time.Second}
	waits := map[time.Duration]bool{}
	for range 20 {
		waits[b.next()] = true
	}
	if len(waits) < 5 {
		t.Errorf("no jitter: %v", waits)
	}
}
