package misp

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/tests/bustest"
)

// searchAttr is an attribute as restSearch returns it, its event nested.
func searchAttr(uuid, typ, value string, toIDs, deleted bool, ts int64) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"id": "7", "event_id": "1", "object_id": "0", "category": "Network activity",
		"type": typ, "value": value, "to_ids": toIDs, "deleted": deleted,
		"uuid": uuid, "timestamp": fmt.Sprint(ts), "distribution": "5", "comment": "",
		"Event": map[string]any{"id": "1", "org_id": "1", "orgc_id": "1", "uuid": "5e1ee79d-25c8-42bd-a386-0291c0a82f06", "info": "evil"},
		"Tag":   []any{map[string]any{"id": "1", "name": "tlp:red"}},
	})
	return b
}

func snapshotUUID(i int) string { return fmt.Sprintf("8c5e3c74-2e30-4f20-9c73-%012d", i) }

// TestSnapshotFromRESTSearch: a subscription with a look-back window gets
// MISP's IDS attributes of that window, searched page by page with the
// spec's request, each mapped like an add; a second filter finding the
// same attributes does not send them twice.
func TestSnapshotFromRESTSearch(t *testing.T) {
	misp := newFakeMISP(t)
	const ts = 1614599635
	misp.attrs = []json.RawMessage{
		searchAttr(snapshotUUID(1), "ip-dst", "6.6.6.6", true, false, ts),
		searchAttr(snapshotUUID(2), "domain", "evil.example", true, false, ts+1),
		searchAttr(snapshotUUID(3), "comment", "not an IoC", true, false, ts),        // unmappable
		searchAttr(snapshotUUID(4), "url", "http://evil.example/", false, false, ts), // not for IDS
		searchAttr(snapshotUUID(5), "domain|ip", "a.example|2001:db8::5", true, false, ts+2),
		searchAttr(snapshotUUID(6), "md5", md5Hex, true, true, ts), // deleted
		searchAttr(snapshotUUID(7), "sha1", sha1Hex, true, false, ts+3),
	}
	app := newTestApp(t, freePort(t), misp.srv.URL, func(a *App) {
		a.Snapshots.PageSize = 2
		a.Filter = []Filter{
			{Types: []string{"ip-dst", "domain", "domain|ip", "sha1"}, Tags: []string{"tlp:red"}},
			{Orgs: []string{"1"}},
		}
	})
	b, _ := startBus(t, app, nil)
	rec := bustest.NewRecorder("snapshot")
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Timeout)
	defer cancel()
	sub, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{"stix2/indicator"}, Snapshot: 7 * 24 * time.Hour, Sink: rec.Sink})
	if err != nil {
		t.Fatal(err)
	}
	if sub.SnapshotID() == "" {
		t.Fatal("no snapshot started")
	}
	want := []*wantIndicator{
		{id: "indicator--" + snapshotUUID(1), pattern: "[ipv4-addr:value = '6.6.6.6']", ts: "2021-03-01T11:53:55.000Z"},
		{id: "indicator--" + snapshotUUID(2), pattern: "[domain-name:value = 'evil.example']", ts: "2021-03-01T11:53:56.000Z"},
		{id: "indicator--" + snapshotUUID(5), pattern: "[domain-name:value = 'a.example'] AND [ipv6-addr:value = '2001:db8::5']", ts: "2021-03-01T11:53:57.000Z"},
		{id: "indicator--" + snapshotUUID(7), pattern: "[file:hashes.'SHA-1' = '" + sha1Hex + "']", ts: "2021-03-01T11:53:58.000Z"},
	}
	// Both filters' searches run through all four pages.
	bustest.Eventually(t, "both searches", func() bool { return len(misp.searchBodies()) == 8 })
	rec.WaitLen(t, len(want))
	for i, m := range rec.Messages() {
		checkIndicator(t, fmt.Sprint("snapshot indicator ", i), m.Payload, want[i])
	}

	searches := misp.searchBodies()
	for i, s := range searches {
		filter := map[string]any{"type": "[ip-dst domain domain|ip sha1]", "tags": "map[OR:[tlp:red]]"}
		if i >= 4 {
			filter = map[string]any{"org": "[1]"}
		}
		exp := map[string]any{"returnFormat": "json", "to_ids": "true", "attribute_timestamp": "7d", "page": fmt.Sprint(i%4 + 1), "limit": "2"}
		for k, v := range filter {
			exp[k] = v
		}
		for k, v := range exp {
			if got := fmt.Sprint(s[k]); got != v {
				t.Errorf("search %d: %s = %s, want %s", i, k, got, v)
			}
		}
		if len(s) != len(exp) {
			t.Errorf("search %d: keys %v, want those of %v", i, s, exp)
		}
	}
	st := app.Stats().Snapshots
	wantSkipped := map[string]uint64{causeUnmappable: 1, causeToIDs: 1, causeDeleted: 1}
	if st.Requests != 1 || st.Indicators != uint64(len(want)) || st.Failed != 0 || fmt.Sprint(st.Skipped) != fmt.Sprint(wantSkipped) {
		t.Errorf("snapshot stats %+v", st)
	}
	rec.Quiet(t, len(want), 50*time.Millisecond)
}

// TestSnapshotRetriesAndSightingSnapshots: a restSearch answering 500 is
// retried; a sighting snapshot is not MISP's to answer.
func TestSnapshotRetriesAndSightingSnapshots(t *testing.T) {
	misp := newFakeMISP(t)
	misp.attrs = []json.RawMessage{searchAttr(snapshotUUID(1), "ip-dst", "6.6.6.6", true, false, 1614599635)}
	misp.searchFail = 2
	app := newTestApp(t, freePort(t), misp.srv.URL, nil)
	b, _ := startBus(t, app, nil)
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Timeout)
	defer cancel()

	sightings := bustest.NewRecorder("sightings")
	if _, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{"stix2/sighting"}, Snapshot: time.Hour, Sink: sightings.Sink}); err != nil {
		t.Fatal(err)
	}
	rec := bustest.NewRecorder("indicators")
	if _, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{"stix2/indicator"}, Snapshot: 90 * time.Minute, Sink: rec.Sink}); err != nil {
		t.Fatal(err)
	}
	rec.WaitLen(t, 1)
	checkIndicator(t, "snapshot", rec.Messages()[0].Payload,
		&wantIndicator{id: "indicator--" + snapshotUUID(1), pattern: "[ipv4-addr:value = '6.6.6.6']", ts: "2021-03-01T11:53:55.000Z"})
	searches := misp.searchBodies()
	if len(searches) != 1 || searches[0]["attribute_timestamp"] != "90m" {
		t.Errorf("searches %v: want one for 90m", searches)
	}
	misp.mu.Lock()
	attempts := misp.searchAttempts
	misp.mu.Unlock()
	if attempts != 3 {
		t.Errorf("%d requests, want 2 failed and 1 answered", attempts)
	}
	if n := sightings.Len(); n != 0 {
		t.Errorf("%d sightings from a MISP snapshot", n)
	}
	if st := app.Stats().Snapshots; st.Requests != 1 {
		t.Errorf("snapshot stats %+v: only the indicator request is MISP's", st)
	}
}

func TestTimeDelta(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7 * 24 * time.Hour: "7d", 36 * time.Hour: "36h", 90 * time.Minute: "90m",
		61 * time.Second: "61s", time.Second: "1s", 1500 * time.Millisecond: "1s", 0: "",
	} {
		if got := timeDelta(d); got != want {
			t.Errorf("timeDelta(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestParseSearch(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		fail bool
	}{
		{`{"response": {"Attribute": [{"uuid": "a"}, {"uuid": "b"}]}}`, 2, false},
		{`{"response": {"Attribute": []}}`, 0, false},
		{`{"response": {}}`, 0, false},
		{`{"response": []}`, 0, false},
		{`{"response": [{"Attribute": {"uuid": "a"}}]}`, 1, false},
		{`{"Attribute": []}`, 0, true},
		{`{"response": "x"}`, 0, true},
		{`<html>`, 0, true},
	} {
		got, err := parseSearch([]byte(c.in))
		if (err != nil) != c.fail || len(got) != c.n {
			t.Errorf("%s: %d attributes, %v", c.in, len(got), err)
		}
	}
}
