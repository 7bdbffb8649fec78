package zeek

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins"
	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
	"github.com/threatbus/threatbus/plugins/apps/zeek/zeektest"
	"github.com/threatbus/threatbus/tests/bustest"
)

// TestIntelReachesTwoZeeks: an indicator published on the bus reaches two
// Zeeks (one speaking like 7.2, one like 8 with event metadata) as
// Tenzir::intel events on their own p2p topics, which the fake's copy of
// the script's declarations accepts.
func TestIntelReachesTwoZeeks(t *testing.T) {
	e := start(t, setup{zeeks: []zeektest.Options{{}, {Metadata: true, Version: "8.0.1"}}})
	z1, z2 := e.zeeks[0], e.zeeks[1]
	p1, p2 := z1.P2P(), z2.P2P()
	if p1 == p2 || !strings.HasPrefix(p1, "stix2/indicator") || !strings.HasPrefix(p2, "stix2/indicator") {
		t.Fatalf("p2p topics %q and %q", p1, p2)
	}
	for _, p := range []string{p1, p2} {
		suffix := strings.TrimPrefix(p, "stix2/indicator")
		if len(suffix) != 10 || strings.Trim(suffix, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Errorf("p2p topic %q: want the topic and 10 lowercase letters", p)
		}
	}

	ind := indicator(t, "[domain-name:value = 'evil.example']")
	e.publish(t, ind.Raw)
	for _, z := range e.zeeks {
		got := waitIntel(t, z, ind.ID)
		want := zeektest.Intel{Topic: z.P2P(), P2P: z.P2P(), TS: indicatorTime, ID: ind.ID, Type: "DOMAIN", Indicator: "evil.example", Operation: "ADD"}
		if got != want {
			t.Errorf("%s got\n%+v, want\n%+v", z.URL(), got, want)
		}
		if id, ok := z.Has("DOMAIN", "evil.example"); !ok || id != ind.ID {
			t.Errorf("%s: the intel store lacks the indicator", z.URL())
		}
	}

	// The bus speaks to each Zeek on its own connection: neither saw the
	// other's acknowledgement, and neither refused anything.
	for _, z := range e.zeeks {
		acks := 0
		for _, ev := range z.Events() {
			if ev.Event.Name == "Tenzir::subscription_acknowledged" {
				acks++
			}
		}
		if acks != 1 {
			t.Errorf("%s handled %d acknowledgements, want 1", z.URL(), acks)
		}
		if errs := z.Errors(); len(errs) > 0 {
			t.Errorf("%s answered errors: %+v", z.URL(), errs)
		}
		if h := z.Headers(); len(h) != 1 || h[0].Get("X-Application-Name") != "threatbus" {
			t.Errorf("%s: handshake headers %v", z.URL(), h)
		}
	}

	// REMOVE withdraws it.
	rm := indicator(t, "[domain-name:value = 'evil.example']", stix.WithID(ind.ID), stix.WithUpdate(stix.UpdateRemove),
		stix.WithModified(indicatorTime.Add(time.Hour)))
	e.publish(t, rm.Raw)
	for _, z := range e.zeeks {
		z.Wait(t, "the REMOVE", func() bool { return len(intelFor(z, ind.ID)) == 2 })
		if in := intelFor(z, ind.ID)[1]; in.Operation != "REMOVE" || in.Type != "DOMAIN" {
			t.Errorf("%s: got %+v", z.URL(), in)
		}
		if _, ok := z.Has("DOMAIN", "evil.example"); ok {
			t.Errorf("%s still has the indicator", z.URL())
		}
	}
	// Counted once written, which may be after Zeek read it.
	for _, z := range e.zeeks {
		bustest.Eventually(t, "the intel to be counted", func() bool { return e.endpointStats(t, z).IntelSent == 2 })
		if ep := e.endpointStats(t, z); !ep.Connected || len(ep.Subscriptions) != 1 || ep.Subscriptions[0].IntelSent != 2 {
			t.Errorf("endpoint stats: %+v", ep)
		}
	}
}

// TestIntelTypes: every kind of point IoC arrives as the Zeek type of the
// spec's table; what Zeek cannot take is counted and not sent.
func TestIntelTypes(t *testing.T) {
	e := start(t, setup{zeeks: []zeektest.Options{{}}})
	z := e.zeeks[0]
	sent := []struct {
		pattern, typ, value string
	}{
		{"[ipv4-addr:value = '6.6.6.6']", "ADDR", "6.6.6.6"},
		{"[ipv4-addr:value = '10.0.0.0/8']", "SUBNET", "10.0.0.0/8"},
		{"[ipv6-addr:value = '2001:db8::1']", "ADDR", "2001:db8::1"},
		{"[url:value = 'https://evil.example/a?b=c']", "URL", "evil.example/a?b=c"},
		{"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']", "FILE_HASH", "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"},
		{"[file:hashes.md5 = 'd41d8cd98f00b204e9800998ecf8427e']", "FILE_HASH", "d41d8cd98f00b204e9800998ecf8427e"},
		{"[email-addr:value = 'a@evil.example']", "EMAIL", "a@evil.example"},
		{"[user-account:user_id = 'root']", "USER_NAME", "root"},
		{"[x509-certificate:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']", "CERT_HASH", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
		{"[software:name = 'Evil Browser']", "SOFTWARE", "Evil Browser"},
		{"[file:name = 'evil.exe']", "FILE_NAME", "evil.exe"},
	}
	skipped := []string{
		"[domain-name:value = 'a.example' AND domain-name:value = 'b.example']",
		"[mac-addr:value = 'aa:bb:cc:dd:ee:ff']",
		"[domain-name:value = 'a.example'] REPEATS 2 TIMES",
		"[x509-certificate:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
	}
	for _, p := range skipped {
		e.publish(t, indicator(t, p).Raw)
	}
	ids := map[string]int{}
	for i, s := range sent {
		ind := indicator(t, s.pattern)
		ids[ind.ID] = i
		e.publish(t, ind.Raw)
	}
	// A sighting on a "stix2/" subscription would be counted too; this
	// Zeek subscribed to indicators only, so sightings never reach it.
	e.publish(t, bustest.Sighting(t, 1))
	m := marker(t)
	e.publish(t, m.Raw)
	waitIntel(t, z, m.ID)
	got := 0
	for _, in := range z.Intel() {
		i, ok := ids[in.ID]
		if !ok {
			continue
		}
		got++
		if in.Type != sent[i].typ || in.Indicator != sent[i].value || in.Operation != "ADD" {
			t.Errorf("%s: got %s %q, want %s %q", sent[i].pattern, in.Type, in.Indicator, sent[i].typ, sent[i].value)
		}
	}
	if got != len(sent) {
		t.Errorf("%d of %d indicators arrived", got, len(sent))
	}
	if na := e.app.Stats().NotApplicable; na[naNotPoint] != 2 || na[naUnsupported] != 2 {
		t.Errorf("not applicable: %v", na)
	}
	if errs := z.Errors(); len(errs) > 0 {
		t.Errorf("Zeek refused intel: %+v", errs)
	}
}

// TestSightingReachesBus: a Tenzir::sighting from Zeek becomes a valid STIX
// Sighting on the bus.
func TestSightingReachesBus(t *testing.T) {
	e := start(t, setup{zeeks: []zeektest.Options{{Metadata: true}}})
	z := e.zeeks[0]
	rec := bustest.NewRecorder("sightings")
	e.bus.Subscribe(t, rec, "stix2/sighting")
	const id = "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06"
	seen := time.Date(2021, 3, 1, 12, 0, 5, 123e6, time.UTC)
	z.Match(id, seen, false)
	rec.WaitLen(t, 1)
	b := rec.Messages()[0].Payload
	s, err := stix.DecodeSighting(b)
	if err != nil {
		t.Fatalf("not a valid STIX sighting: %v\n%s", err, b)
	}
	if s.SightingOfRef != id || !s.LastSeen.Equal(seen) || s.Source != "zeek" || string(s.Context) != `{"noisy":false}` {
		t.Errorf("got %s", b)
	}
	validateSighting(t, b)
	// Counted once Publish returned, which may be after the delivery.
	bustest.Eventually(t, "the sighting to be counted", func() bool { return e.endpointStats(t, z).Sightings == 1 })
	if st := e.endpointStats(t, z); len(st.Rejected) != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// TestReconnectResubscribesWithoutDuplicates: when the connection drops, the
// bus dials again, sends its topics again, the script subscribes again, and
// the Zeek gets every later indicator once: the old subscription ended with
// the old connection.
func TestReconnectResubscribesWithoutDuplicates(t *testing.T) {
	e := start(t, setup{zeeks: []zeektest.Options{{}}})
	z := e.zeeks[0]
	old := z.P2P()
	before := indicator(t, "[ipv4-addr:value = '192.0.2.1']")
	e.publish(t, before.Raw)
	waitIntel(t, z, before.ID)

	z.DropClients()
	p2p := e.waitSubscribed(t, z, old)
	if z.Acks() != 2 || z.Subscribes() != 2 {
		t.Errorf("acks %d, subscribes %d: want 2 handshakes and 2 subscribes", z.Acks(), z.Subscribes())
	}
	bustest.Eventually(t, "one subscription", func() bool {
		st := e.endpointStats(t, z)
		return len(st.Subscriptions) == 1 && st.Subscriptions[0].P2P == p2p
	})
	after := indicator(t, "[ipv4-addr:value = '192.0.2.2']")
	e.publish(t, after.Raw)
	m := marker(t)
	e.publish(t, m.Raw)
	waitIntel(t, z, m.ID)
	if got := intelFor(z, after.ID); len(got) != 1 || got[0].Topic != p2p {
		t.Errorf("after the reconnect: %+v", got)
	}
	if got := intelFor(z, before.ID); len(got) != 1 {
		t.Errorf("before the reconnect: %+v", got)
	}

	// A Zeek restart: the server goes away, the bus retries with backoff
	// until it is back.
	z.Stop()
	bustest.Eventually(t, "the endpoint to be down", func() bool { return e.app.Ready() != nil })
	z.Restart()
	p2p3 := e.waitSubscribed(t, z, p2p)
	bustest.Eventually(t, "ready again", func() bool { return e.app.Ready() == nil })
	again := indicator(t, "[ipv4-addr:value = '192.0.2.3']")
	e.publish(t, again.Raw)
	m = marker(t)
	e.publish(t, m.Raw)
	waitIntel(t, z, m.ID)
	if got := intelFor(z, again.ID); len(got) != 1 || got[0].Topic != p2p3 {
		t.Errorf("after the restart: %+v", got)
	}
	st := e.endpointStats(t, z)
	if st.Connects != 3 || st.Disconnects != 2 || st.Subscribed != 3 || len(st.Subscriptions) != 1 {
		t.Errorf("stats: %+v", st)
	}
	waitZeekSubscriptions(t, e, 1)
}

// waitZeekSubscriptions waits until the bus holds n subscriptions of the
// Zeek app: Close takes a subscription out of the router at once, and its
// actor, which the status lists, stops right after.
func waitZeekSubscriptions(t *testing.T, e *env, n int) {
	t.Helper()
	bustest.Eventually(t, fmt.Sprintf("%d subscriptions of the Zeek app", n), func() bool {
		status, err := e.bus.Daemon.Status(t.Context())
		if err != nil {
			return false
		}
		got := 0
		for _, s := range status.Subscriptions {
			if s.App == Name {
				got++
			}
		}
		return got == n
	})
}

// TestRepeatedSubscribe: a subscribe the connection already has is
// acknowledged with the same p2p topic, and the Zeek still gets everything
// once.
func TestRepeatedSubscribe(t *testing.T) {
	e := start(t, setup{zeeks: []zeektest.Options{{}}})
	z := e.zeeks[0]
	p2p := z.P2P()
	z.Subscribe()
	z.Wait(t, "the second acknowledgement", func() bool {
		n := 0
		for _, ev := range z.Events() {
			if ev.Event.Name == "Tenzir::subscription_acknowledged" {
				n++
			}
		}
		return n == 2
	})
	if z.P2P() != p2p {
		t.Errorf("p2p topic changed from %s to %s", p2p, z.P2P())
	}
	st := e.endpointStats(t, z)
	if st.Resubscribed != 1 || st.Subscribed != 1 || len(st.Subscriptions) != 1 {
		t.Errorf("stats: %+v", st)
	}
	ind := indicator(t, "[ipv4-addr:value = '198.51.100.7']")
	e.publish(t, ind.Raw)
	m := marker(t)
	e.publish(t, m.Raw)
	waitIntel(t, z, m.ID)
	if got := intelFor(z, ind.ID); len(got) != 1 {
		t.Errorf("got %d intel events, want 1", len(got))
	}
}

// TestUnsubscribe: Tenzir::unsubscribe ends the Zeek's bus subscription.
func TestUnsubscribe(t *testing.T) {
	e := start(t, setup{zeeks: []zeektest.Options{{}}})
	z := e.zeeks[0]
	z.Unsubscribe()
	bustest.Eventually(t, "the subscription to end", func() bool {
		st := e.endpointStats(t, z)
		return st.Unsubscribed == 1 && len(st.Subscriptions) == 0
	})
	waitZeekSubscriptions(t, e, 0)
	// An unknown topic is counted, and the connection stays.
	z.Unsubscribe() // the p2p topic is gone now
	bustest.Eventually(t, "the unknown unsubscribe to be counted", func() bool {
		return e.endpointStats(t, z).Rejected[rejUnknownTopic] == 1
	})
	if err := e.app.Ready(); err != nil {
		t.Error(err)
	}
}

// TestSnapshot: the snapshot window Zeek asks for goes through the core's
// snapshot flow, and what apps answer reaches this Zeek only.
func TestSnapshot(t *testing.T) {
	old := indicator(t, "[domain-name:value = 'old.example']")
	snap := &snapshotApp{bodies: [][]byte{old.Raw}}
	e := start(t, setup{
		zeeks: []zeektest.Options{{SnapshotIntel: 30 * 24 * time.Hour}, {}},
		apps:  []config.Instance{{Kind: plugins.KindApp, Name: "snap", Plugin: snap}},
	})
	z, other := e.zeeks[0], e.zeeks[1]
	got := waitIntel(t, z, old.ID)
	if got.Topic != z.P2P() || got.Indicator != "old.example" {
		t.Errorf("snapshot intel: %+v", got)
	}
	reqs := snap.requests()
	if len(reqs) != 1 || reqs[0].Window != 30*24*time.Hour || reqs[0].Type != 1 {
		t.Errorf("snapshot requests: %+v", reqs)
	}
	st := e.endpointStats(t, z)
	if len(st.Subscriptions) != 1 || st.Subscriptions[0].SnapshotID == "" || st.Subscriptions[0].Snapshot != 30*24*time.Hour {
		t.Errorf("stats: %+v", st.Subscriptions)
	}
	// The other Zeek asked for no snapshot and gets none.
	m := marker(t)
	e.publish(t, m.Raw)
	waitIntel(t, other, m.ID)
	if n := len(intelFor(other, old.ID)); n != 0 {
		t.Errorf("the other Zeek got the snapshot %d times", n)
	}
}

// TestServerErrors: Zeek's error messages are counted and logged with what
// was sent last; they do not end the connection. So are malformed messages
// from Zeek.
func TestServerErrors(t *testing.T) {
	// A Zeek whose script declares the intel record differently refuses
	// every intel event, as Zeek ≥ 7.2 does.
	e := start(t, setup{zeeks: []zeektest.Options{{EditScript: func(s string) string {
		return strings.Replace(s, "indicator: string;", "indicator: addr;", 1)
	}}}})
	z := e.zeeks[0]
	for i := range 3 {
		e.publish(t, indicator(t, "[domain-name:value = 'refused.example']", stix.WithProperty("x_n", json.RawMessage([]byte{byte('0' + i)}))).Raw)
	}
	bustest.Eventually(t, "three errors to be counted", func() bool {
		return e.endpointStats(t, z).ServerErrors["deserialization_failed"] == 3
	})
	for _, err := range z.Errors() {
		if err.Code != "deserialization_failed" || err.Context != "failed to create Zeek event" {
			t.Errorf("the fake answered %+v", err)
		}
	}
	// Counted before it is logged.
	bustest.Eventually(t, "three errors to be logged", func() bool { return strings.Count(e.log.String(), "Zeek reports an error") == 3 })
	log := e.log.String()
	if strings.Count(log, "level=WARN msg=\"zeek: Zeek reports an error") != 1 ||
		!strings.Contains(log, "context=\"failed to create Zeek event\"") || !strings.Contains(log, "last_sent=\"Tenzir::intel on stix2/indicator") {
		t.Errorf("log:\n%s", log)
	}

	// Garbage from Zeek is counted, and ignored.
	z.SendRaw([]byte(`{"type":"data-message"`))
	z.SendRaw([]byte(`{"type":"data-message","topic":"stix2/sighting","@data-type":"count","data":1}`))
	z.SendRaw([]byte(`{"type":"ack","endpoint":"x","version":"y"}`))
	bustest.Eventually(t, "garbage to be counted", func() bool {
		st := e.endpointStats(t, z)
		return st.Rejected[rejMalformed] == 1 && st.Rejected[rejNotEvent] == 1 && st.Ignored["ack"] == 1
	})
	// Still connected, still working.
	rec := bustest.NewRecorder("sightings")
	e.bus.Subscribe(t, rec, "stix2/sighting")
	z.Match("indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06", time.Now(), true)
	rec.WaitLen(t, 1)
	if st := e.endpointStats(t, z); st.Connects != 1 || !st.Connected {
		t.Errorf("the connection did not survive: %+v", st)
	}
}

// TestHandshakeRefused: a Zeek that refuses the handshake (here: the wrong
// path) is retried with backoff and reported by Ready.
func TestHandshakeRefused(t *testing.T) {
	good := fakeZeek(t, zeektest.Options{})
	bad := fakeZeek(t, zeektest.Options{})
	e := start(t, setup{
		endpoints: []string{good.URL(), bad.URL() + "/v1/wrong"},
		noWait:    true,
	})
	e.waitSubscribed(t, good, "")
	bustest.Eventually(t, "the refusal to be retried", func() bool {
		n := 0
		for _, err := range bad.Errors() {
			if err.Code == "invalid_uri" {
				n++
			}
		}
		return n >= 2
	})
	err := e.app.Ready()
	if err == nil || !strings.Contains(err.Error(), "1 of 2 endpoints") || !strings.Contains(err.Error(), "/v1/wrong") ||
		!strings.Contains(err.Error(), "invalid_uri") || strings.Contains(err.Error(), good.URL()+"/v1/messages/json") {
		t.Errorf("Ready: %v", err)
	}
}

// TestUnreachableAtStart: an endpoint that is down when the bus starts is
// dialed until it comes up.
func TestUnreachableAtStart(t *testing.T) {
	z := fakeZeek(t, zeektest.Options{})
	z.Stop()
	e := start(t, setup{endpoints: []string{z.URL()}, noWait: true})
	bustest.Eventually(t, "a failed dial", func() bool {
		err := e.app.Ready()
		return err != nil && strings.Contains(err.Error(), "dial")
	})
	z.Restart()
	e.waitSubscribed(t, z, "")
	bustest.Eventually(t, "ready", func() bool { return e.app.Ready() == nil })
}

// TestBadEventsFromZeek: subscribes and sightings Zeek's type checks let
// through but the bus cannot use are counted, and nothing else happens.
func TestBadEventsFromZeek(t *testing.T) {
	e := start(t, setup{zeeks: []zeektest.Options{{}}})
	z := e.zeeks[0]
	z.Publish("threatbus/manage", bj.NewEvent("Tenzir::subscribe", bj.String(""), bj.Timespan(0)))
	z.Match("evil.example", time.Now(), false) // not a STIX id
	// Another script's event on a topic the bus subscribed to.
	other, err := bj.EncodeEvent("stix2/sighting", bj.NewEvent("Other::sighting", bj.NewTimestamp(time.Now()), bj.String("x"), bj.Table{}))
	if err != nil {
		t.Fatal(err)
	}
	z.SendRaw(other)
	bustest.Eventually(t, "the bad events to be counted", func() bool {
		st := e.endpointStats(t, z)
		return st.Rejected[rejBadSubscribe] == 1 && st.Rejected[rejInvalidSight] == 1 && st.Ignored["Other::sighting"] == 1
	})
	if st := e.endpointStats(t, z); st.Subscribed != 1 || st.Sightings != 0 || !st.Connected {
		t.Errorf("stats: %+v", st)
	}
}

// TestConnectTimeout: a server that accepts but never answers (the
// upgrade, or the handshake) is given up on after connect_timeout.
func TestConnectTimeout(t *testing.T) {
	silentTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silentTCP.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		silentTCP.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	noAck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for { // read the topics, never answer
			if _, _, err := c.Read(r.Context()); err != nil {
				return
			}
		}
	}))
	t.Cleanup(noAck.Close)
	e := start(t, setup{
		endpoints: []string{"ws://" + silentTCP.Addr().String(), "ws" + strings.TrimPrefix(noAck.URL, "http")},
		app:       func(a *App) { a.ConnectTimeout = config.Duration(150 * time.Millisecond) },
		noWait:    true,
	})
	bustest.Eventually(t, "both endpoints to time out", func() bool {
		err := e.app.Ready()
		return err != nil && strings.Count(err.Error(), "(connect_timeout 150ms)") == 2 &&
			strings.Contains(err.Error(), "waiting for the ack")
	})
}

// TestPingDetectsDeadZeek: a Zeek that stops reading (hung, or its host
// gone without a FIN) is noticed by the missing pong and redialed.
func TestPingDetectsDeadZeek(t *testing.T) {
	var accepted atomic.Int32
	quit := make(chan struct{})
	var handlers sync.WaitGroup
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		if _, _, err := c.Read(r.Context()); err != nil {
			return
		}
		ack, _ := bj.Encode(&bj.Ack{Endpoint: "stuck", Version: "8.0.0"})
		if err := c.Write(r.Context(), websocket.MessageText, ack); err != nil {
			return
		}
		accepted.Add(1)
		<-quit // and never read again: no pongs
	}))
	t.Cleanup(func() {
		close(quit)
		stuck.Close()
		handlers.Wait()
	})
	e := start(t, setup{
		endpoints: []string{"ws" + strings.TrimPrefix(stuck.URL, "http")},
		app:       func(a *App) { a.PingInterval = config.Duration(100 * time.Millisecond) },
		noWait:    true,
	})
	bustest.Eventually(t, "the dead connection to be dropped and redialed", func() bool {
		st := e.app.Stats().Endpoints[0]
		return st.Disconnects >= 1 && strings.Contains(st.LastError, "no pong") && accepted.Load() >= 2
	})
}

// TestStopClosesConnections: stopping the bus closes every connection with
// a close frame and ends the Zeeks' subscriptions.
func TestStopClosesConnections(t *testing.T) {
	e := start(t, setup{zeeks: []zeektest.Options{{}, {}}})
	e.bus.Stop(t)
	for _, z := range e.zeeks {
		z.Wait(t, "the bus to hang up", func() bool { return z.Clients() == 0 })
	}
	for _, st := range e.app.Stats().Endpoints {
		if st.Connected || len(st.Subscriptions) != 0 || st.LastError != "stopped" {
			t.Errorf("after stop: %+v", st)
		}
	}
	select {
	case e.app.st.running <- struct{}{}: // Run has let go
		<-e.app.st.running
	default:
		t.Error("Run did not return")
	}
}

// TestAppRestart: when the bus restarts the app (here: an injected crash),
// the connections close, their subscriptions end, and the Zeek subscribes
// anew over the new connection: one subscription, no duplicates.
func TestAppRestart(t *testing.T) {
	e := start(t, setup{zeeks: []zeektest.Options{{}}, bus: func(c *config.Config) {
		c.Chaos.Enabled = true
		c.Supervision.BackoffMin = config.Duration(time.Millisecond)
		c.Supervision.BackoffMax = config.Duration(10 * time.Millisecond)
	}})
	z := e.zeeks[0]
	old := z.P2P()
	if err := e.bus.Daemon.Crash(Name); err != nil {
		t.Fatal(err)
	}
	p2p := e.waitSubscribed(t, z, old)
	waitZeekSubscriptions(t, e, 1)
	ind := indicator(t, "[domain-name:value = 'after-restart.example']")
	e.publish(t, ind.Raw)
	m := marker(t)
	e.publish(t, m.Raw)
	waitIntel(t, z, m.ID)
	if got := intelFor(z, ind.ID); len(got) != 1 || got[0].Topic != p2p {
		t.Errorf("after the restart: %+v", got)
	}
	if r := e.bus.Daemon.Stats().Restarts; len(r) == 0 {
		t.Errorf("no restart counted: %v", r)
	}
}
