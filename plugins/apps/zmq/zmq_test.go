package zmq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins/apps/zmq"
	"github.com/threatbus/threatbus/plugins/apps/zmq/zmqclient"
	"github.com/threatbus/threatbus/tests/bustest"
)

var subscribeReply = regexp.MustCompile(`^\{"topic": "([a-z]{32})", "pub_port": (\d+), "sub_port": (\d+), "status": "success"\}$`)

// TestManagement sends every request of the spec's table, and its edge
// cases, over real sockets the way clients do, and compares reply bytes.
func TestManagement(t *testing.T) {
	e := start(t, setup{})
	base := e.subscriptions(t)
	_, pub, sub := e.app.Ports()

	var topics []string
	for _, body := range []string{
		`{"action": "subscribe", "topic": "stix2/indicator", "snapshot": 30}`,
		`{"action": "subscribe", "topic": ["stix2/indicator", "stix2/sighting"], "snapshot": 0}`,
		`{"action": "subscribe", "topic": "stix2/indicator", "snapshot": 0}`,
		`{"action": "subscribe", "topic": "stix2/indicator", "snapshot": 3}`,
		`{"action": "subscribe", "topic": "stix2/indicator", "snapshot": "5"}`,
		`{"action": "subscribe", "topic": "stix2/sighting"}`,
	} {
		got := e.request(t, []byte(body))
		m := subscribeReply.FindStringSubmatch(got)
		if m == nil || m[2] != strconv.Itoa(pub) || m[3] != strconv.Itoa(sub) {
			t.Fatalf("%s: reply %s; want a private topic and ports %d, %d", body, got, pub, sub)
		}
		topics = append(topics, m[1])
	}
	if n := e.subscriptions(t); n != base+len(topics) {
		t.Fatalf("%d subscriptions, want %d", n, base+len(topics))
	}
	const (
		success = `{"status": "success"}`
		failure = `{"status": "error"}`
		unknown = `{"status": "unknown request"}`
	)
	for _, p2p := range topics {
		for _, c := range []struct{ body, want string }{
			{`{"action": "heartbeat", "topic": "` + p2p + `"}`, success},
			{`{"action": "unsubscribe", "topic": "` + p2p + `"}`, success},
			{`{"action": "unsubscribe", "topic": "` + p2p + `"}`, failure}, // twice
			{`{"action": "heartbeat", "topic": "` + p2p + `"}`, failure},   // after unsubscribe
		} {
			if got := e.request(t, []byte(c.body)); got != c.want {
				t.Errorf("%s: %s, want %s", c.body, got, c.want)
			}
		}
	}

	for _, c := range []struct{ body, want string }{
		{`{"action": "frobnicate", "topic": "stix2/indicator"}`, unknown},
		{`{"action": "subscribe"}`, unknown},
		{`{"action": "subscribe", "topic": null}`, unknown},
		{`{"action": "subscribe", "topic": ""}`, unknown},
		{`{"action": "subscribe", "topic": []}`, unknown},
		{`{"action": "heartbeat"}`, unknown},
		{`{"action": "heartbeat", "topic": ""}`, unknown},
		{`{"action": "unsubscribe", "topic": null}`, unknown},
		{`{"action": "unsubscribe", "topic": []}`, unknown},
		{`{"topic": "stix2/indicator"}`, unknown},
		{`{"action": 1, "topic": "stix2/indicator"}`, unknown},
		{`{"action": "SUBSCRIBE", "topic": "stix2/indicator"}`, unknown},
		{`{}`, unknown},
		{`{"action": "subscribe", "topic": 42}`, failure},
		{`{"action": "subscribe", "topic": ["stix2/indicator", 42]}`, failure},
		{`{"action": "subscribe", "topic": "stix2/indicator", "snapshot": "FOO"}`, failure},
		{`{"action": "subscribe", "topic": "stix2/indicator", "snapshot": null}`, failure},
		{`{"action": "subscribe", "topic": "stix2/indicator", "snapshot": [1]}`, failure},
		{`{"action": "heartbeat", "topic": ["` + topics[0] + `"]}`, failure},
		{`{"action": "unsubscribe", "topic": ["` + topics[0] + `"]}`, failure},
		{`{"action": "heartbeat", "topic": "stix2/indicator"}`, failure},
		{`not json`, failure},
		{`{"action": "subscribe", "topic": "stix2/indicator"`, failure},
		{"{\"action\": \"subscribe\", \"topic\": \"stix2/\xc3\x28\"}", failure},
		{``, failure},
		{`[{"action": "subscribe", "topic": "stix2/indicator"}]`, failure},
		{`"subscribe"`, failure},
		{`42`, failure},
		{`null`, failure},
		{`true`, failure},
	} {
		if got := e.request(t, []byte(c.body)); got != c.want {
			t.Errorf("%q: %s, want %s", c.body, got, c.want)
		}
	}

	// A request of two frames still gets exactly one reply.
	req, err := zmq4.NewSocket(zmq4.REQ)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = req.Close() }()
	_ = req.SetLinger(0)
	_ = req.SetRcvtimeo(zmqclient.Timeout)
	if err := req.Connect("tcp://" + e.endpoint); err != nil {
		t.Fatal(err)
	}
	if _, err := req.SendMessage(`{"action": "subscribe",`, `"topic": "stix2/indicator"}`); err != nil {
		t.Fatal(err)
	}
	if got, err := req.RecvMessage(0); err != nil || len(got) != 1 || got[0] != failure {
		t.Errorf("multipart request: %q %v", got, err)
	}

	// Nothing the failed requests did is left subscribed.
	if n := e.subscriptions(t); n != base {
		t.Errorf("%d subscriptions left, want %d", n, base)
	}
	if s := e.app.Stats().Subscriptions; len(s) != 0 {
		t.Errorf("subscriptions left: %+v", s)
	}
}

// objects returns the test data's indicators and sightings as the exact
// bytes of their files, plus one with a large integer.
func objects(t *testing.T) [][]byte {
	var out [][]byte
	for _, f := range []string{"indicator-domain.json", "indicator-opencti-style.json", "indicator-remove.json", "sighting-vast-retro.json", "sighting-zeek.json"} {
		out = append(out, readFile(t, f))
	}
	for _, f := range []string{"bundle-indicator-c2-ip.json", "bundle-malicious-email.json"} {
		var b struct{ Objects []json.RawMessage }
		if err := json.Unmarshal(readFile(t, f), &b); err != nil {
			t.Fatal(err)
		}
		for _, o := range b.Objects {
			if typeOf(t, o) == "indicator" {
				out = append(out, []byte(o))
			}
		}
	}
	big := bytes.Replace(readFile(t, "indicator-domain.json"), []byte(`"pattern_version": "2.1"`), []byte(`"pattern_version": "2.1", "x_big": 1700000000123456789`), 1)
	return append(out, big)
}

func typeOf(t *testing.T, obj []byte) string {
	t.Helper()
	typ, _, err := stix.Peek(obj)
	if err != nil {
		t.Fatal(err)
	}
	return typ
}

// TestRoundTrip carries the test data app → bus → app and bus → app, and
// checks that every byte survives (unknown properties, layout, large
// integers).
func TestRoundTrip(t *testing.T) {
	e := start(t, setup{})
	a := e.subscribe(t, 0, "stix2/indicator", "stix2/sighting")
	rec := bustest.NewRecorder("probe")
	e.bus.Subscribe(t, rec, "stix2/")
	p := e.publisher(t)
	objs := objects(t)
	if len(objs) < 8 {
		t.Fatalf("only %d objects in the test data", len(objs))
	}
	for i, obj := range objs {
		typ := typeOf(t, obj)
		if err := p.Publish("stix2/"+typ, obj); err != nil {
			t.Fatal(err)
		}
		a.expect(typ, obj) // the echo: the original sends it back too
		rec.WaitLen(t, i+1)
		if got := rec.Messages()[i].Payload; !bytes.Equal(got, obj) {
			t.Fatalf("the bus got %s\nwant %s", got, obj)
		}
	}
	for _, obj := range objs {
		e.bus.Publish(t, obj)
		a.expect(typeOf(t, obj), obj)
	}
	// Counted after Publish returns: the echo may arrive first.
	bustest.Eventually(t, "every object to be counted", func() bool { return e.app.Stats().Accepted == uint64(len(objs)) })
	if st := e.app.Stats(); len(st.Rejected) != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestInboundDrops sends every frame of the spec's drop list, each followed
// by a valid one that must still arrive (and arrive next, so the bad one was
// not delivered). Each cause is counted and logged once.
func TestInboundDrops(t *testing.T) {
	e := start(t, setup{})
	a := e.subscribe(t, 0, "stix2/")
	p := e.publisher(t)
	want := map[string]uint64{}
	seq := 0
	check := func(name string, send func() error) {
		t.Helper()
		if err := send(); err != nil {
			t.Fatal(err)
		}
		seq++
		valid := bustest.Indicator(t, seq)
		if err := p.Publish("stix2/indicator", valid); err != nil {
			t.Fatal(err)
		}
		topic, got := a.next()
		if topic != a.p2p()+"indicator" || !bytes.Equal(got, valid) {
			t.Fatalf("after %s: got %q %s, want the valid indicator %d", name, topic, got, seq)
		}
	}
	for round := 0; round < 2; round++ {
		for _, c := range zmq.DropCases(t) {
			check(c.Name, func() error { return p.Send([]byte(c.Frame)) })
			if strings.HasPrefix(c.Frame, "stix2/") || strings.HasPrefix(c.Frame, "threatbus/snapshotenvelope") {
				want[c.Cause]++
			} // else zmq's subscription filter drops it before the app sees it
		}
		check("multipart", func() error {
			return p.SendParts([]byte("stix2/indicator"), bustest.Indicator(t, 1000+round))
		})
		want[zmq.CauseMultipart]++
		env := bytes.TrimSpace(readFile(t, "snapshotenvelope-indicator.json")) // SNAPSHOT_UUID was never requested
		check("unknown snapshot", func() error { return p.Publish("threatbus/snapshotenvelope", env) })
		want[zmq.CauseUnknownSnapshot]++
	}
	bustest.Eventually(t, "every valid frame to be counted", func() bool { return e.app.Stats().Accepted == uint64(seq) })
	st := e.app.Stats()
	for cause, n := range want {
		if st.Rejected[cause] != n {
			t.Errorf("cause %s: counted %d, want %d", cause, st.Rejected[cause], n)
		}
		if got := e.log.count("cause=" + cause + " "); got != 1 {
			t.Errorf("cause %s logged %d times, want once", cause, got)
		}
	}
	if len(st.Rejected) != len(want) {
		t.Errorf("causes %v, want %v", st.Rejected, want)
	}
}

// TestSnapshotBetweenApps: a snapshot request goes to every zmq app but the
// requester, and an envelope an app sends back reaches only the requester.
func TestSnapshotBetweenApps(t *testing.T) {
	e := start(t, setup{})
	a := e.subscribe(t, 0, "stix2/indicator")
	m0 := bustest.Indicator(t, 0)
	e.bus.Publish(t, m0)
	a.expect("indicator", m0) // a is connected

	b := e.subscribe(t, 3, "stix2/indicator")
	topic, raw := a.next()
	if topic != a.p2p()+"snapshotrequest" {
		t.Fatalf("a got %q %s, want a snapshot request", topic, raw)
	}
	req, err := stix.DecodeSnapshotRequest(raw)
	if err != nil {
		t.Fatalf("snapshot request %s: %v", raw, err)
	}
	if req.SnapshotType != stix.SnapshotIndicators || req.Window != 3*24*time.Hour {
		t.Fatalf("request %s", raw)
	}
	want := fmt.Sprintf(`{"type": "snapshotrequest", "snapshot_type": 1, "snapshot_id": %q, "snapshot": 259200}`, req.SnapshotID)
	var got, exp any
	_ = json.Unmarshal(raw, &got)
	_ = json.Unmarshal([]byte(want), &exp)
	if fmt.Sprint(got) != fmt.Sprint(exp) {
		t.Fatalf("request %s, want %s", raw, want)
	}

	// a answers with two objects, one of them from the shared envelope file.
	p := e.publisher(t)
	body1 := bytes.TrimSpace(readFile(t, "indicator-opencti-style.json"))
	env1 := fmt.Sprintf(`{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": %q, "body": %s}`, req.SnapshotID, body1)
	env2 := bytes.Replace(bytes.TrimSpace(readFile(t, "snapshotenvelope-indicator.json")), []byte("SNAPSHOT_UUID"), []byte(req.SnapshotID), 1)
	e2, err := stix.DecodeSnapshotEnvelope(env2)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range [][]byte{[]byte(env1), env2} {
		if err := p.Publish("threatbus/snapshotenvelope", env); err != nil {
			t.Fatal(err)
		}
	}
	b.expect("indicator", body1) // b's first frames: no request of its own
	b.expect("indicator", e2.Body)

	// Only b got the bodies: the next thing both get is a new indicator.
	m1 := bustest.Indicator(t, 1)
	e.bus.Publish(t, m1)
	a.expect("indicator", m1)
	b.expect("indicator", m1)

	// A subscription to stix2/ asks for indicators and sightings; a and b
	// both get both requests, c none.
	c := e.subscribe(t, 1, "stix2/")
	for _, x := range []*app{a, b} {
		types := map[stix.SnapshotType]bool{}
		for i := 0; i < 2; i++ {
			topic, raw := x.next()
			r, err := stix.DecodeSnapshotRequest(raw)
			if topic != x.p2p()+"snapshotrequest" || err != nil || r.Window != 24*time.Hour {
				t.Fatalf("%q %s: %v", topic, raw, err)
			}
			types[r.SnapshotType] = true
		}
		if !types[stix.SnapshotIndicators] || !types[stix.SnapshotSightings] {
			t.Fatalf("request types %v", types)
		}
	}
	m2 := bustest.Indicator(t, 2)
	e.bus.Publish(t, m2)
	c.expect("indicator", m2)
	bustest.Eventually(t, "both envelopes to be counted", func() bool { return e.app.Stats().Accepted == 2 })
	if st := e.app.Stats(); len(st.Rejected) != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestResubscribeAfterBusRestart: a client heartbeating against a bus that
// restarted gets "error", subscribes again and receives again.
func TestResubscribeAfterBusRestart(t *testing.T) {
	e1 := start(t, setup{})
	m, p, s := e1.app.Ports()

	ctx, cancel := context.WithCancel(context.Background())
	subscribed := make(chan zmqclient.Reply, 4)
	received := make(chan []byte, 16)
	sess := &zmqclient.Session{
		Endpoint: e1.endpoint, Topics: []string{"stix2/indicator"},
		HeartbeatInterval: 50 * time.Millisecond, Timeout: time.Second,
		OnSubscribed: func(r zmqclient.Reply) { subscribed <- r },
	}
	done := make(chan error, 1)
	go func() {
		done <- sess.Run(ctx, func(_ string, payload []byte) { received <- payload })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("session: %v", err)
		}
	}()
	first := <-subscribed
	expectPayload := func(want []byte) {
		t.Helper()
		select {
		case got := <-received:
			if !bytes.Equal(got, want) {
				t.Fatalf("got %s, want %s", got, want)
			}
		case <-time.After(timeout):
			t.Fatal("nothing received")
		}
	}
	m1 := bustest.Indicator(t, 1)
	e1.bus.Publish(t, m1)
	expectPayload(m1)

	e1.bus.Stop(t)
	e2 := start(t, setup{ports: [3]int{m, p, s}})
	var second zmqclient.Reply
	select {
	case second = <-subscribed:
	case <-time.After(timeout):
		t.Fatal("the client did not subscribe again")
	}
	if second.Topic == first.Topic || second.PubPort != p || second.SubPort != s {
		t.Fatalf("second subscription %+v after %+v", second, first)
	}
	if status, err := zmqclient.Heartbeat(e2.endpoint, first.Topic, zmqclient.Timeout); status != zmqclient.StatusError {
		t.Fatalf("heartbeat for the old topic: %q %v", status, err)
	}
	m2 := bustest.Indicator(t, 2)
	e2.bus.Publish(t, m2)
	expectPayload(m2)
}
