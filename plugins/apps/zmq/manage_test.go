package zmq

import (
	"regexp"
	"slices"
	"testing"
	"time"
)

const day = 24 * time.Hour

// TestDecodeRequest covers every row and edge case of the spec's table, and
// the Python int() semantics of "snapshot" the original had.
func TestDecodeRequest(t *testing.T) {
	for _, c := range []struct {
		in       string
		status   string // "" when actionable
		action   string
		topics   []string
		snapshot time.Duration
	}{
		// The spec's table.
		{`{"action":"subscribe","topic":"stix2/indicator","snapshot":30}`, "", actionSubscribe, []string{"stix2/indicator"}, 30 * day},
		{`{"action":"subscribe","topic":["stix2/indicator","stix2/sighting"]}`, "", actionSubscribe, []string{"stix2/indicator", "stix2/sighting"}, 0},
		{`{"action":"unsubscribe","topic":"abc"}`, "", actionUnsubscribe, []string{"abc"}, 0},
		{`{"action":"heartbeat","topic":"abc"}`, "", actionHeartbeat, []string{"abc"}, 0},
		{`{"action":"frobnicate","topic":"abc"}`, statusUnknown, "", nil, 0},
		// topic missing, null, "" or [] (any action)
		{`{"action":"subscribe"}`, statusUnknown, "", nil, 0},
		{`{"action":"subscribe","topic":null}`, statusUnknown, "", nil, 0},
		{`{"action":"subscribe","topic":""}`, statusUnknown, "", nil, 0},
		{`{"action":"subscribe","topic":[]}`, statusUnknown, "", nil, 0},
		{`{"action":"heartbeat","topic":""}`, statusUnknown, "", nil, 0},
		{`{"action":"heartbeat","topic":[]}`, statusUnknown, "", nil, 0},
		{`{"action":"unsubscribe"}`, statusUnknown, "", nil, 0},
		{`{"action":"unsubscribe","topic":null}`, statusUnknown, "", nil, 0},
		// other falsy values, as Python's `and topic`
		{`{"action":"subscribe","topic":0}`, statusUnknown, "", nil, 0},
		{`{"action":"subscribe","topic":false}`, statusUnknown, "", nil, 0},
		{`{"action":"subscribe","topic":{}}`, statusUnknown, "", nil, 0},
		// action missing, not a string, unknown, not lower case
		{`{"topic":"stix2/indicator"}`, statusUnknown, "", nil, 0},
		{`{"action":5,"topic":"stix2/indicator"}`, statusUnknown, "", nil, 0},
		{`{"action":["subscribe"],"topic":"stix2/indicator"}`, statusUnknown, "", nil, 0},
		{`{"action":null,"topic":"stix2/indicator"}`, statusUnknown, "", nil, 0},
		{`{"action":"SUBSCRIBE","topic":"stix2/indicator"}`, statusUnknown, "", nil, 0},
		{`{"action":"Heartbeat","topic":"abc"}`, statusUnknown, "", nil, 0},
		{`{}`, statusUnknown, "", nil, 0},
		// subscribe with a number, a list holding a non-string, an object
		{`{"action":"subscribe","topic":42}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":["stix2/indicator",5]}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":["stix2/indicator",null]}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":[["stix2/indicator"]]}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":{"a":1}}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":true}`, statusError, "", nil, 0},
		// snapshot "FOO", null, a list, an object
		{`{"action":"subscribe","topic":"stix2/indicator","snapshot":"FOO"}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"stix2/indicator","snapshot":null}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"stix2/indicator","snapshot":[]}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"stix2/indicator","snapshot":[3]}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"stix2/indicator","snapshot":{}}`, statusError, "", nil, 0},
		// a bad snapshot fails whatever the action: it was parsed first
		{`{"action":"heartbeat","topic":"abc","snapshot":"FOO"}`, statusError, "", nil, 0},
		{`{"snapshot":null}`, statusError, "", nil, 0},
		// snapshot 0, 3, "5"
		{`{"action":"subscribe","topic":"stix2/indicator","snapshot":0}`, "", actionSubscribe, []string{"stix2/indicator"}, 0},
		{`{"action":"subscribe","topic":"stix2/indicator","snapshot":3}`, "", actionSubscribe, []string{"stix2/indicator"}, 3 * day},
		{`{"action":"subscribe","topic":"stix2/indicator","snapshot":"5"}`, "", actionSubscribe, []string{"stix2/indicator"}, 5 * day},
		// Python's int(): floats truncate, strings may carry spaces, a
		// sign and underscores, booleans are 0/1, negative means none.
		{`{"action":"subscribe","topic":"x","snapshot":3.9}`, "", actionSubscribe, []string{"x"}, 3 * day},
		{`{"action":"subscribe","topic":"x","snapshot":-0.5}`, "", actionSubscribe, []string{"x"}, 0},
		{`{"action":"subscribe","topic":"x","snapshot":1e1}`, "", actionSubscribe, []string{"x"}, 10 * day},
		{`{"action":"subscribe","topic":"x","snapshot":" 7\n"}`, "", actionSubscribe, []string{"x"}, 7 * day},
		{`{"action":"subscribe","topic":"x","snapshot":"+1_0"}`, "", actionSubscribe, []string{"x"}, 10 * day},
		{`{"action":"subscribe","topic":"x","snapshot":true}`, "", actionSubscribe, []string{"x"}, day},
		{`{"action":"subscribe","topic":"x","snapshot":false}`, "", actionSubscribe, []string{"x"}, 0},
		{`{"action":"subscribe","topic":"x","snapshot":-3}`, "", actionSubscribe, []string{"x"}, 0},
		{`{"action":"subscribe","topic":"x","snapshot":"-3"}`, "", actionSubscribe, []string{"x"}, 0},
		{`{"action":"subscribe","topic":"x","snapshot":999999999}`, "", actionSubscribe, []string{"x"}, time.Duration(maxSnapshotDays) * day},
		{`{"action":"subscribe","topic":"x","snapshot":1000000000}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"x","snapshot":1e300}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"x","snapshot":1e400}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"x","snapshot":99999999999999999999999}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"x","snapshot":"5.0"}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"x","snapshot":"1__0"}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"x","snapshot":"_1"}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"x","snapshot":""}`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"x","snapshot":"0x10"}`, statusError, "", nil, 0},
		// heartbeat/unsubscribe with a list or a number as topic
		{`{"action":"heartbeat","topic":["abc"]}`, statusError, "", nil, 0},
		{`{"action":"unsubscribe","topic":["abc"]}`, statusError, "", nil, 0},
		{`{"action":"heartbeat","topic":42}`, statusError, "", nil, 0},
		{`{"action":"unsubscribe","topic":{"a":1}}`, statusError, "", nil, 0},
		// not JSON, truncated JSON, invalid UTF-8, an empty frame
		{`hello`, statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"stix2/indicator"`, statusError, "", nil, 0},
		{"{\"action\":\"subscribe\",\"topic\":\"stix2/\xff\"}", statusError, "", nil, 0},
		{"", statusError, "", nil, 0},
		{`{"action":"subscribe","topic":"x"} trailing`, statusError, "", nil, 0},
		// JSON that is an array, string, number, null or boolean
		{`[{"action":"subscribe","topic":"x"}]`, statusError, "", nil, 0},
		{`"subscribe"`, statusError, "", nil, 0},
		{`42`, statusError, "", nil, 0},
		{`null`, statusError, "", nil, 0},
		{`true`, statusError, "", nil, 0},
		// Whitespace, duplicates (the last wins, as in Python), escapes.
		{" \n{\"action\" : \"heartbeat\" , \"topic\" : \"abc\"}\n", "", actionHeartbeat, []string{"abc"}, 0},
		{`{"action":"unsubscribe","action":"heartbeat","topic":"abc"}`, "", actionHeartbeat, []string{"abc"}, 0},
		{`{"action":"subscrib\u0065","topic":"stix2\/indicator"}`, "", actionSubscribe, []string{"stix2/indicator"}, 0},
		{`{"action":"subscribe","topic":["a","b","a"]}`, "", actionSubscribe, []string{"a", "b"}, 0},
		{`{"action":"subscribe","topic":["", "a"]}`, "", actionSubscribe, []string{"", "a"}, 0},
	} {
		req, status := decodeRequest([]byte(c.in))
		if status != c.status {
			t.Errorf("%q: status %q, want %q", c.in, status, c.status)
			continue
		}
		if status != "" {
			continue
		}
		if req.action != c.action || !slices.Equal(req.topics, c.topics) || req.snapshot != c.snapshot {
			t.Errorf("%q: got %+v, want action %q topics %q snapshot %v", c.in, req, c.action, c.topics, c.snapshot)
		}
	}
}

// TestReplies checks the bytes: Python's json.dumps with its default
// separators, keys in the spec's order.
func TestReplies(t *testing.T) {
	if got := string(subscribeReply("abcdefghijklmnopqrstuvwxyzabcdef", 13371, 13372)); got != `{"topic": "abcdefghijklmnopqrstuvwxyzabcdef", "pub_port": 13371, "sub_port": 13372, "status": "success"}` {
		t.Errorf("subscribe reply %s", got)
	}
	for status, want := range map[string]string{
		statusSuccess: `{"status": "success"}`,
		statusError:   `{"status": "error"}`,
		statusUnknown: `{"status": "unknown request"}`,
	} {
		if got := string(statusReply(status)); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestP2P(t *testing.T) {
	shape := regexp.MustCompile(`^[a-z]{32}$`)
	seen := map[string]bool{}
	counts := map[rune]int{}
	for i := 0; i < 2000; i++ {
		p, err := newP2P()
		if err != nil {
			t.Fatal(err)
		}
		if !shape.MatchString(p) || !isP2P(p) {
			t.Fatalf("%q is not 32 lowercase letters", p)
		}
		if seen[p] {
			t.Fatalf("%q twice", p)
		}
		seen[p] = true
		for _, r := range p {
			counts[r]++
		}
	}
	// 64000 letters: each of the 26 is expected ~2462 times. A modulo bias
	// or a stuck generator would show far outside ±20%.
	for r := 'a'; r <= 'z'; r++ {
		if n := counts[r]; n < 1970 || n > 2950 {
			t.Errorf("letter %c drawn %d times of 64000", r, n)
		}
	}
	if isP2P("stix2/indicator") || isP2P("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF") {
		t.Error("isP2P accepts what newP2P never makes")
	}
}
