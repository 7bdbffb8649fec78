package zeek

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
)

// TestStatsLog: the counters line carries every per-endpoint counter the
// README lists, and a change in any of them, the ignored events included,
// is logged at the next interval.
func TestStatsLog(t *testing.T) {
	a := New()
	a.Endpoints = []string{"ws://zeek-1:27759"}
	if err := a.Init(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	lines := func() []map[string]any {
		var out []map[string]any
		for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(l, &m); err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			out = append(out, m)
		}
		buf.Reset()
		return out
	}

	a.st.logStats(log, true)
	got := lines()
	if len(got) != 1 {
		t.Fatalf("final: %d lines", len(got))
	}
	ep, ok := got[0][a.st.endpoints[0].url].(map[string]any)
	if !ok {
		t.Fatalf("no group for the endpoint: %v", got[0])
	}
	for _, k := range []string{"connected", "last_error", "zeek_endpoint", "zeek_version", "connects",
		"disconnects", "subscriptions", "subscribed", "unsubscribed", "resubscribed", "intel_sent",
		"sightings", "dropped", "server_errors", "rejected", "ignored"} {
		if _, ok := ep[k]; !ok {
			t.Errorf("the counters line lacks %s: %v", k, ep)
		}
	}
	if ep["last_error"] != "not connected yet" {
		t.Errorf("last_error %v", ep["last_error"])
	}

	a.st.logStats(log, false)
	if got := lines(); len(got) != 0 {
		t.Fatalf("nothing changed, yet logged: %v", got)
	}
	a.st.endpoints[0].c.ignored.add("Other::event")
	a.st.logStats(log, false)
	if got := lines(); len(got) != 1 {
		t.Fatalf("ignored{event} changed: %d lines, want 1", len(got))
	}
	a.st.endpoints[0].setDown(errors.New("dial: connection refused"))
	a.st.logStats(log, false)
	if got := lines(); len(got) != 1 {
		t.Fatalf("last_error changed: %d lines, want 1", len(got))
	}
}
