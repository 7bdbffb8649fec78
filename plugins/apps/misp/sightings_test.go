package misp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/tests/bustest"
)

var sightingBase = time.Date(2021, 3, 1, 12, 0, 0, 0, time.UTC)

func attrUUID(i int) string { return fmt.Sprintf("5f7b2284-bdd8-4ef4-b457-%012d", i) }

// zeekSighting is a sighting of attribute i as Zeek reports it.
func zeekSighting(t testing.TB, i int) []byte {
	t.Helper()
	s, err := stix.NewSighting("indicator--"+attrUUID(i), sightingBase.Add(time.Duration(i)*time.Second),
		stix.WithSource("zeek"), stix.WithCreated(sightingBase.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	return s.Raw
}

// wantSighting is the body MISP must receive for zeekSighting(i).
func wantSighting(i int) map[string]any {
	return map[string]any{
		"uuid":      attrUUID(i),
		"type":      "0",
		"source":    "zeek",
		"timestamp": json.Number(fmt.Sprint(sightingBase.Unix() + int64(i))),
	}
}

func checkSightings(t testing.TB, got []map[string]any, want []map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("MISP took %d sightings, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Errorf("sighting %d: MISP got %v, want %v", i, got[i], want[i])
		}
	}
}

// TestSightingsSurviveMISPOutage: MISP answers 500 for a while, then drops
// connections, then recovers. Every sighting arrives once, in order, with
// the spec's headers and body; Ready reports the outage meanwhile.
func TestSightingsSurviveMISPOutage(t *testing.T) {
	misp := newFakeMISP(t)
	misp.fail500 = 1 << 30
	misp.hangups = 2
	app := newTestApp(t, freePort(t), misp.srv.URL, nil)
	b, _ := startBus(t, app, nil)

	const n = 20
	var want []map[string]any
	for i := range n {
		b.Publish(t, zeekSighting(t, i))
		want = append(want, wantSighting(i))
	}
	// No last_seen: the timestamp is created's; no source: none is sent.
	bare := `{"type": "sighting", "spec_version": "2.1", "id": "sighting--2e6a4c1e-6b5f-4f1a-9d0e-7c3b2a1f0e9d",` +
		` "created": "2021-03-01T12:00:05.123Z", "modified": "2021-03-01T12:00:05.123Z",` +
		` "sighting_of_ref": "indicator--` + attrUUID(99) + `"}`
	b.Publish(t, []byte(bare))
	want = append(want, map[string]any{"uuid": attrUUID(99), "type": "0", "timestamp": json.Number("1614600005")})
	// Not an indicator: not MISP's business. Not a valid sighting: counted.
	notIndicator, err := stix.NewSighting("malware--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061", sightingBase)
	if err != nil {
		t.Fatal(err)
	}
	b.Publish(t, notIndicator.Raw)
	b.Publish(t, []byte(`{"type": "sighting", "id": "sighting--nope"}`))

	bustest.Eventually(t, "the outage to show in Ready", func() bool {
		err := app.Ready()
		return err != nil && strings.Contains(err.Error(), "REST API") && strings.Contains(err.Error(), "500")
	})
	bustest.Eventually(t, "retries while MISP fails", func() bool { return app.Stats().Sightings.Retries >= 5 })
	if got := misp.accepted(); len(got) != 0 {
		t.Fatalf("MISP failing, yet it took %d", len(got))
	}
	bustest.Eventually(t, "every sighting queued", func() bool { return app.Stats().Sightings.Queued == n+1 })

	misp.mu.Lock()
	misp.fail500 = 0 // then two dropped connections, then it works
	misp.mu.Unlock()
	bustest.Eventually(t, "every sighting to reach MISP", func() bool { return len(misp.accepted()) >= len(want) })
	checkSightings(t, misp.accepted(), want)
	bustest.Eventually(t, "the REST API ready after the outage", func() bool {
		err := app.Ready() // the ZeroMQ intake has no MISP here: only the REST part may clear
		return err != nil && !strings.Contains(err.Error(), "REST API")
	})
	bustest.Eventually(t, "the last reply to be counted", func() bool { return app.Stats().Sightings.Queued == 0 })
	st := app.Stats().Sightings
	if st.Sent != uint64(len(want)) || st.Rejected != 0 || st.Dropped != 0 || st.Queued != 0 || st.Ignored != 1 || st.Invalid != 1 {
		t.Errorf("sighting stats %+v", st)
	}
	misp.mu.Lock()
	hangups := misp.hangups
	misp.mu.Unlock()
	if hangups != 0 {
		t.Errorf("%d dropped connections left: the client did not retry through them", hangups)
	}
}

// TestSightingsRefused: a 4xx, or a reply with a message and no Sighting,
// is logged with MISP's reason and counted, not retried.
func TestSightingsRefused(t *testing.T) {
	misp := newFakeMISP(t)
	const reason = "Could not add the Sighting. Reason: No valid attributes found."
	misp.refuse[attrUUID(1)] = reason
	app := newTestApp(t, freePort(t), misp.srv.URL, nil)
	b, log := startBus(t, app, nil)
	for i := range 3 {
		b.Publish(t, zeekSighting(t, i))
	}
	bustest.Eventually(t, "two sent, one refused", func() bool {
		st := app.Stats().Sightings
		return st.Sent == 2 && st.Rejected == 1
	})
	checkSightings(t, misp.accepted(), []map[string]any{wantSighting(0), wantSighting(2)})
	if !strings.Contains(log.String(), reason) {
		t.Errorf("MISP's reason is not in the log:\n%s", log.String())
	}
	if st := app.Stats().Sightings; st.Retries != 0 {
		t.Errorf("a refusal was retried: %+v", st)
	}
}

func TestSightingReplies(t *testing.T) {
	for _, c := range []struct {
		reply string
		ok    bool
	}{
		{`{"Sighting": {"id": "1"}}`, true},
		{`{"saved": true, "success": true, "name": "1 sighting successfully added.", "message": "1 sighting successfully added."}`, true},
		{`{"name": "No valid attributes found.", "message": "No valid attributes found.", "url": "/sightings/add"}`, false},
		{`{"saved": false, "message": "Could not add the Sighting."}`, false},
		{`not json`, false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(c.reply)) }))
		rest := newRESTClient(srv.URL, testKey, nil, time.Second)
		st := &state{rest: rest}
		err := st.addSighting(context.Background(), []byte(`{}`))
		if (err == nil) != c.ok {
			t.Errorf("reply %s: error %v, want ok=%v", c.reply, err, c.ok)
		}
		if err != nil && transient(err) {
			t.Errorf("reply %s: %v counted as transient", c.reply, err)
		}
		rest.closeIdle()
		srv.Close()
	}
}

// TestSightingQueueBound: while MISP is down the queue keeps the newest
// sightings up to its size and counts what it dropped.
func TestSightingQueueBound(t *testing.T) {
	misp := newFakeMISP(t)
	misp.fail500 = 1 << 30
	app := newTestApp(t, freePort(t), misp.srv.URL, func(a *App) { a.Sightings.Queue = 3 })
	b, _ := startBus(t, app, nil)
	for i := range 10 {
		b.Publish(t, zeekSighting(t, i))
	}
	bustest.Eventually(t, "drops to be counted", func() bool { return app.Stats().Sightings.Dropped == 7 })
	misp.mu.Lock()
	misp.fail500 = 0
	misp.mu.Unlock()
	bustest.Eventually(t, "the queue to drain", func() bool { return app.Stats().Sightings.Queued == 0 && len(misp.accepted()) >= 3 })
	// The newest two, and the oldest kept: the one that was being posted
	// when the queue overflowed, or else the third newest.
	got := misp.accepted()
	checkSightings(t, got[1:], []map[string]any{wantSighting(8), wantSighting(9)})
	if st := app.Stats().Sightings; st.Sent != 3 || st.Dropped != 7 {
		t.Errorf("sighting stats %+v", st)
	}
}

// TestSightingsSurviveRestart: the app crashes while MISP is down; the
// restarted app sends what the first one had queued, once, and does not
// subscribe a second time.
func TestSightingsSurviveRestart(t *testing.T) {
	misp := newFakeMISP(t)
	misp.fail500 = 1 << 30
	app := newTestApp(t, freePort(t), misp.srv.URL, nil)
	b, _ := startBus(t, app, func(c *config.Config) { c.Chaos.Enabled = true })
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Timeout)
	defer cancel()
	bustest.Eventually(t, "the sightings subscription", func() bool { n, _ := b.Daemon.Subscribers(ctx); return n == 1 })
	for i := range 5 {
		b.Publish(t, zeekSighting(t, i))
	}
	bustest.Eventually(t, "retries", func() bool { return app.Stats().Sightings.Retries >= 2 })
	if err := b.Daemon.Crash(Name); err != nil {
		t.Fatal(err)
	}
	// The restart waits for the supervisor's backoff; the first Run goes
	// on meanwhile. Recover MISP only once the second Run took over.
	bustest.Eventually(t, "the restarted Run", func() bool {
		app.st.mu.Lock()
		defer app.st.mu.Unlock()
		return app.st.runs == 2 && app.st.running
	})
	misp.mu.Lock()
	misp.fail500 = 0
	misp.mu.Unlock()
	bustest.Eventually(t, "every sighting to reach MISP", func() bool { return len(misp.accepted()) >= 5 })
	var want []map[string]any
	for i := range 5 {
		want = append(want, wantSighting(i))
	}
	checkSightings(t, misp.accepted(), want)
	if n, err := b.Daemon.Subscribers(ctx); err != nil || n != 1 {
		t.Errorf("subscriptions after the restart: %d, %v; want 1", n, err)
	}
	b.Publish(t, zeekSighting(t, 5))
	bustest.Eventually(t, "a sighting after the restart", func() bool { return len(misp.accepted()) >= 6 })
	checkSightings(t, misp.accepted(), append(want, wantSighting(5)))
}
