package misp

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the child process of TestTimestamps needs Asia/Kolkata

	"github.com/threatbus/threatbus/messages/stix"
)

const (
	md5Hex    = "d41d8cd98f00b204e9800998ecf8427e"
	sha1Hex   = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
	sha256Hex = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"
	sha512Hex = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
	ssdeepVal = "96:s4Ud1Lj96tHHlZDrwciQmA+4uy1I0G4HYuL8N3TzS8QsO/wqWXLcMSx:sF1LjEtHHlZDrwciQmA+4uyCxAXQqWXLc"
	tlshVal   = "T1A0B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4"
)

// TestPatternFor is the spec's mapping table, row by row, plus what must
// be refused. Every pattern produced must parse.
func TestPatternFor(t *testing.T) {
	for _, c := range []struct {
		typ, value, v1, v2 string
		want               string // pattern, or "skip:<cause>"
	}{
		{typ: "ip", value: "6.6.6.6", want: "[ipv4-addr:value = '6.6.6.6']"},
		{typ: "ip-src", value: "6.6.6.6", want: "[ipv4-addr:value = '6.6.6.6']"},
		{typ: "ip-dst", value: "198.51.100.0/24", want: "[ipv4-addr:value = '198.51.100.0/24']"},
		{typ: "ip-src", value: "2001:db8::1", want: "[ipv6-addr:value = '2001:db8::1']"},
		{typ: "ip-dst", value: "2001:db8::/32", want: "[ipv6-addr:value = '2001:db8::/32']"},
		{typ: "ip-dst", value: "::ffff:192.0.2.1", want: "[ipv6-addr:value = '::ffff:192.0.2.1']"},
		{typ: "ip-dst", value: "evil.example", want: "skip:" + causeInvalidValue},
		{typ: "ip-dst", value: "300.1.1.1", want: "skip:" + causeInvalidValue},
		{typ: "hostname", value: "www.evil.example", want: "[domain-name:value = 'www.evil.example']"},
		{typ: "domain", value: "evil.example", want: "[domain-name:value = 'evil.example']"},
		{typ: "mac-address", value: "00-1A-2B-3C-4D-5E", want: "[mac-addr:value = '00:1a:2b:3c:4d:5e']"},
		{typ: "mac-eui-64", value: "00:1a:2b:ff:fe:3c:4d:5e", want: "[mac-addr:value = '00:1a:2b:ff:fe:3c:4d:5e']"},
		{typ: "email", value: "a@evil.example", want: "[email-addr:value = 'a@evil.example']"},
		{typ: "email-src", value: "a@evil.example", want: "[email-addr:value = 'a@evil.example']"},
		{typ: "email-dst", value: "b@evil.example", want: "[email-addr:value = 'b@evil.example']"},
		{typ: "eppn", value: "user@idp.example", want: "[email-addr:value = 'user@idp.example']"},
		{typ: "url", value: "https://evil.example/a?b=c", want: "[url:value = 'https://evil.example/a?b=c']"},
		{typ: "uri", value: "/wp-admin/x.php", want: "[url:value = '/wp-admin/x.php']"},
		{typ: "AS", value: "AS64496", want: "[autonomous-system:number = 64496]"},
		{typ: "AS", value: "64496", want: "[autonomous-system:number = 64496]"},
		{typ: "AS", value: "ASX", want: "skip:" + causeInvalidValue},
		{typ: "AS", value: "AS4294967296", want: "skip:" + causeInvalidValue},
		{typ: "md5", value: md5Hex, want: "[file:hashes.MD5 = '" + md5Hex + "']"},
		{typ: "sha1", value: sha1Hex, want: "[file:hashes.'SHA-1' = '" + sha1Hex + "']"},
		{typ: "sha256", value: sha256Hex, want: "[file:hashes.'SHA-256' = '" + sha256Hex + "']"},
		{typ: "sha512", value: sha512Hex, want: "[file:hashes.'SHA-512' = '" + sha512Hex + "']"},
		{typ: "ssdeep", value: ssdeepVal, want: "[file:hashes.SSDEEP = '" + ssdeepVal + "']"},
		{typ: "tlsh", value: tlshVal, want: "[file:hashes.TLSH = '" + tlshVal + "']"},
		{typ: "md5", value: "f00", want: "skip:" + causeInvalidValue}, // the validator checks hash lengths
		{typ: "sha256", value: md5Hex, want: "skip:" + causeInvalidValue},
		{typ: "filename", value: "invoice.pdf.exe", want: "[file:name = 'invoice.pdf.exe']"},
		{typ: "filename", value: `C:\Users\o'neil\a.exe`, want: `[file:name = 'C:\\Users\\o\'neil\\a.exe']`},
		{typ: "url", value: `http://x/'];DROP`, want: `[url:value = 'http://x/\'];DROP']`},
		{typ: "x509-fingerprint-md5", value: md5Hex, want: "[x509-certificate:hashes.MD5 = '" + md5Hex + "']"},
		{typ: "x509-fingerprint-sha1", value: sha1Hex, want: "[x509-certificate:hashes.'SHA-1' = '" + sha1Hex + "']"},
		{typ: "x509-fingerprint-sha256", value: sha256Hex, want: "[x509-certificate:hashes.'SHA-256' = '" + sha256Hex + "']"},
		{typ: "stix2-pattern", value: "[network-traffic:dst_port = 443]", want: "[network-traffic:dst_port = 443]"},
		{typ: "stix2-pattern", value: "  network-traffic:dst_port = 443 ", want: "[network-traffic:dst_port = 443]"},
		{typ: "stix2-pattern", value: "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [domain-name:value = 'x.example'] WITHIN 60 SECONDS",
			want: "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [domain-name:value = 'x.example'] WITHIN 60 SECONDS"},
		{typ: "stix2-pattern", value: "[ipv4-addr:value = ", want: "skip:" + causeInvalidValue},
		{typ: "domain|ip", value: "evil.example|198.51.100.7", v1: "evil.example", v2: "198.51.100.7",
			want: "[domain-name:value = 'evil.example'] AND [ipv4-addr:value = '198.51.100.7']"},
		{typ: "domain|ip", value: "evil.example|2001:db8::7",
			want: "[domain-name:value = 'evil.example'] AND [ipv6-addr:value = '2001:db8::7']"},
		{typ: "filename|sha256", value: "a|b.exe|" + sha256Hex, // split at the last '|'
			want: "[file:name = 'a|b.exe'] AND [file:hashes.'SHA-256' = '" + sha256Hex + "']"},
		{typ: "filename|md5", value: "ignored", v1: "x.exe", v2: md5Hex,
			want: "[file:name = 'x.exe'] AND [file:hashes.MD5 = '" + md5Hex + "']"},
		{typ: "filename|md5", value: "x.exe|f00", want: "skip:" + causeInvalidValue},
		{typ: "domain|ip", value: "evil.example", want: "skip:" + causeInvalidValue},
		{typ: "ip-dst|port", value: "6.6.6.6|443", want: "skip:" + causeUnmappable},
		{typ: "comment", value: "hello", want: "skip:" + causeUnmappable},
		{typ: "domain", value: "", want: "skip:" + causeInvalidValue},
		{typ: "domain", value: "", v1: "from-value1.example", want: "[domain-name:value = 'from-value1.example']"},
	} {
		name := c.typ + " " + c.value
		got, err := patternFor(c.typ, c.value, c.v1, c.v2)
		if cause, ok := strings.CutPrefix(c.want, "skip:"); ok {
			var sk *skip
			if !errors.As(err, &sk) || sk.cause != cause {
				t.Errorf("%s: got %q, %v; want skipped as %s", name, got, err, cause)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s:\n got  %s (%v)\n want %s", name, got, err, c.want)
			continue
		}
		if _, err := stix.Parse(got); err != nil {
			t.Errorf("%s: %s does not parse: %v", name, got, err)
		}
	}
}

func TestMappableTypes(t *testing.T) {
	for typ := range simpleTypes {
		if !mappableType(typ) {
			t.Errorf("%s not mappable", typ)
		}
	}
	for _, typ := range []string{"stix2-pattern", "domain|ip", "filename|sha256", "filename|tlsh"} {
		if !mappableType(typ) {
			t.Errorf("%s not mappable", typ)
		}
	}
	for _, typ := range []string{"", "comment", "ip-dst|port", "domain|ip|x", "|", "domain|", "Domain"} {
		if mappableType(typ) {
			t.Errorf("%q mappable", typ)
		}
	}
}

// msg builds an attribute message around attr (a JSON object's members).
func msg(action, attr string, event bool) []byte {
	ev := ""
	if event {
		ev = `, "Event": {"id": "1", "orgc_id": "1", "Orgc": {"id": "1", "name": "ORGNAME"}}`
	}
	return []byte(`{"Attribute": {` + attr + `}` + ev + `, "action": "` + action + `"}`)
}

const domainAttr = `"uuid": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "type": "domain", "value": "example.com", "timestamp": "1614599635"`

// TestActions: what each action, to_ids and deleted flag becomes.
func TestActions(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		name string
		in   []byte
		want string // "", "EDIT", "REMOVE" or "skip:<cause>"
	}{
		{"add", msg("add", domainAttr+`, "to_ids": true`, true), ""},
		{"add, to_ids as string", msg("add", domainAttr+`, "to_ids": "1"`, true), ""},
		{"add, to_ids as number", msg("add", domainAttr+`, "to_ids": 1`, true), ""},
		{"add without to_ids", msg("add", domainAttr+`, "to_ids": false`, true), "skip:" + causeToIDs},
		{"add, to_ids \"0\"", msg("add", domainAttr+`, "to_ids": "0"`, true), "skip:" + causeToIDs},
		{"add, to_ids missing", msg("add", domainAttr, true), "skip:" + causeToIDs},
		{"add of a deleted attribute", msg("add", domainAttr+`, "to_ids": true, "deleted": true`, true), "REMOVE"},
		{"no action", msg("", domainAttr+`, "to_ids": true`, true), ""},
		{"edit", msg("edit", domainAttr+`, "to_ids": true`, true), "EDIT"},
		{"edit to to_ids false", msg("edit", domainAttr+`, "to_ids": false`, true), "REMOVE"},
		{"edit of a deleted attribute", msg("edit", domainAttr+`, "to_ids": true, "deleted": "1"`, true), "REMOVE"},
		{"soft-delete", msg("soft-delete", domainAttr+`, "to_ids": true, "deleted": true`, true), "REMOVE"},
		{"soft-delete of a non-IDS attribute", msg("soft-delete", domainAttr+`, "to_ids": false`, true), "REMOVE"},
		{"delete without Event", msg("delete", domainAttr+`, "to_ids": true`, false), "REMOVE"},
		{"action in capitals", msg("Delete", domainAttr+`, "to_ids": true`, false), "REMOVE"},
		{"unknown action", msg("publish", domainAttr+`, "to_ids": true`, true), "skip:" + causeUnknownAction},
		{"unmappable type", msg("add", `"uuid": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "type": "comment", "value": "x", "to_ids": true`, true), "skip:" + causeUnmappable},
		{"bad uuid", msg("add", `"uuid": "nope", "type": "domain", "value": "x.example", "to_ids": true`, true), "skip:" + causeInvalidUUID},
		{"uuid version 0", msg("add", `"uuid": "5e1f2787-fcfc-0718-a58a-00b4c0a82f06", "type": "domain", "value": "x.example", "to_ids": true`, true), "skip:" + causeInvalidUUID},
		{"negative timestamp", msg("add", `"uuid": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "type": "domain", "value": "x.example", "to_ids": true, "timestamp": -5`, true), "skip:" + causeInvalidTimestamp},
		{"timestamp past 9999", msg("add", `"uuid": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "type": "domain", "value": "x.example", "to_ids": true, "timestamp": "253402300800"`, true), "skip:" + causeInvalidTimestamp},
		{"timestamp not a number", msg("add", `"uuid": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "type": "domain", "value": "x.example", "to_ids": true, "timestamp": "soon"`, true), "skip:" + causeMalformed},
		{"not JSON", []byte(`{"Attribute": `), "skip:" + causeMalformed},
		{"a list", []byte(`[]`), "skip:" + causeMalformed},
		{"no Attribute", []byte(`{"status": "Still alive", "uptime": 120}`), "skip:" + causeMalformed},
		{"Attribute not an object", []byte(`{"Attribute": "x", "action": "add"}`), "skip:" + causeMalformed},
		{"Tag not a list", msg("add", domainAttr+`, "to_ids": true, "Tag": {"name": "x"}`, true), "skip:" + causeMalformed},
		{"Tag null", msg("add", domainAttr+`, "to_ids": true, "Tag": null`, true), ""},
		{"nulls", msg("add", domainAttr+`, "to_ids": true, "value1": null, "value2": null, "first_seen": null`, true), ""},
	} {
		p := newProcessor(nil)
		ind, err := p.process(c.in, now)
		if cause, ok := strings.CutPrefix(c.want, "skip:"); ok {
			var sk *skip
			if !errors.As(err, &sk) || sk.cause != cause {
				t.Errorf("%s: got %v, %v; want skipped as %s", c.name, ind, err, cause)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if string(ind.Update) != c.want {
			t.Errorf("%s: x_threatbus_update %q, want %q", c.name, ind.Update, c.want)
		}
	}
}

// TestTimestamps: created, modified and valid_from are the attribute's
// timestamp in UTC, from a string or a number, whatever the local time zone
// (the original rendered local time): the checks run here and again in a
// child process whose zone is UTC+05:30.
func TestTimestamps(t *testing.T) {
	if os.Getenv("MISP_TEST_TZ_CHILD") != "" {
		if _, off := time.Now().Zone(); off != 5*3600+1800 {
			t.Fatalf("TZ=%s did not apply: offset %d", os.Getenv("TZ"), off)
		}
		checkTimestamps(t)
		return
	}
	checkTimestamps(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestTimestamps$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MISP_TEST_TZ_CHILD=1", "TZ=Asia/Kolkata")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("with TZ=Asia/Kolkata: %v\n%s", err, out)
	}
}

func checkTimestamps(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).In(time.Local)
	for _, ts := range []string{`"1614599635"`, `1614599635`, `1614599635.0`, `1.614599635e9`, `" 1614599635 "`} {
		in := msg("add", `"uuid": "5E1F2787-FCFC-4718-A58A-00B4C0A82F06", "type": "domain", "value": "example.com", "to_ids": true, "timestamp": `+ts, true)
		ind, err := newProcessor(nil).process(in, now)
		if err != nil {
			t.Errorf("timestamp %s: %v", ts, err)
			continue
		}
		checkIndicator(t, "timestamp "+ts, ind.Raw, &wantIndicator{
			id:      "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06",
			pattern: "[domain-name:value = 'example.com']",
			ts:      "2021-03-01T11:53:55.000Z",
		})
	}
	// No timestamp at all: the time it arrived.
	in := msg("add", `"uuid": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "type": "domain", "value": "example.com", "to_ids": true`, true)
	ind, err := newProcessor(nil).process(in, now)
	if err != nil {
		t.Fatal(err)
	}
	checkIndicator(t, "no timestamp", ind.Raw, &wantIndicator{
		id: "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06", pattern: "[domain-name:value = 'example.com']", ts: "2030-01-02T03:04:05.000Z",
	})
}

// TestEveryTestdataFileMaps runs the mapper directly on every sample (the
// replay test does the same over ZeroMQ).
func TestEveryTestdataFileMaps(t *testing.T) {
	p := newProcessor(nil)
	for _, file := range testdataFiles(t) {
		want, ok := replayWant[file]
		if !ok {
			t.Errorf("%s: no expectation", file)
			continue
		}
		ind, err := p.process(readTestdata(t, file), time.Now())
		if want == nil {
			var sk *skip
			if !errors.As(err, &sk) || sk.cause != causeMalformed {
				t.Errorf("%s: a heartbeat mapped to %v, %v", file, ind, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		checkIndicator(t, file, ind.Raw, want)
	}
}

func TestFlexibleDecoding(t *testing.T) {
	var a attribute
	in := `{"uuid": 5, "type": "domain", "value": 12, "to_ids": "true", "deleted": 0, "timestamp": null, "Tag": ["a", {"name": "b"}, {"name": 7}]}`
	if err := json.Unmarshal([]byte(in), &a); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %s %s %v %v %v %v", a.UUID, a.Type, a.Value, a.ToIDs, a.Deleted, a.Timestamp, a.Tag)
	want := "5 domain 12 {true true} {false true} {0 false} {[a b 7] true}"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []string{`{"to_ids": "maybe"}`, `{"timestamp": 1.5}`, `{"uuid": {}}`, `{"Tag": [[1]]}`} {
		if err := json.Unmarshal([]byte(bad), &a); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
}
