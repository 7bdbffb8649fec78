package zmq_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/apps/zmq"
	"github.com/threatbus/threatbus/plugins/apps/zmq/zmqclient"
	"github.com/threatbus/threatbus/tests/bustest"
)

func statsOf(t *testing.T, a *zmq.App, p2p string) zmq.SubscriptionStats {
	t.Helper()
	for _, s := range a.Stats().Subscriptions {
		if s.Topic == p2p {
			return s
		}
	}
	t.Fatalf("no subscription %s", p2p)
	return zmq.SubscriptionStats{}
}

// restartable runs the app's Run, and runs it again on demand with the same
// bus handle: what the bus does when it restarts a failed app.
type restartable struct {
	*zmq.App
	mu     sync.Mutex
	bus    plugins.Bus
	cancel context.CancelFunc
	done   chan error
	ready  chan struct{}
}

func (r *restartable) Run(ctx context.Context, bus plugins.Bus) error {
	r.mu.Lock()
	r.bus = bus
	r.mu.Unlock()
	r.launch(ctx)
	close(r.ready)
	<-ctx.Done()
	r.stop()
	return nil
}

func (r *restartable) launch(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	runCtx, cancel := context.WithCancel(ctx)
	r.cancel, r.done = cancel, make(chan error, 1)
	go func(bus plugins.Bus, done chan error) { done <- r.App.Run(runCtx, bus) }(r.bus, r.done)
}

func (r *restartable) stop() error {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel = nil
	r.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	return <-done
}

// TestAppRestartKeepsSubscriptions: Run is called again on the same App (as
// after a crash); the app's subscription survives, and what was published
// while the sockets were closed is delivered once the app reconnects.
func TestAppRestartKeepsSubscriptions(t *testing.T) {
	r := &restartable{ready: make(chan struct{})}
	e := start(t, setup{wrap: func(a *zmq.App) plugins.App { r.App = a; return r }})
	<-r.ready
	a := e.subscribe(t, 0, "stix2/indicator")
	m1 := bustest.Indicator(t, 1)
	e.bus.Publish(t, m1)
	a.expect("indicator", m1)
	ports := fmt.Sprint(e.app.Ports())

	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if e.app.Ready() == nil {
		t.Fatal("ready with the sockets closed")
	}
	m2 := bustest.Indicator(t, 2)
	e.bus.Publish(t, m2) // held: nobody is connected
	r.launch(context.Background())
	bustest.Eventually(t, "the app to listen again", func() bool { return e.app.Ready() == nil })
	if got := fmt.Sprint(e.app.Ports()); got != ports {
		t.Fatalf("ports %s after the restart, were %s", got, ports)
	}
	if status, err := zmqclient.Heartbeat(e.endpoint, a.p2p(), zmqclient.Timeout); status != zmqclient.StatusSuccess {
		t.Fatalf("heartbeat after the restart: %q %v", status, err)
	}
	a.expect("indicator", m2) // the client's SUB socket reconnected by itself
	m3 := bustest.Indicator(t, 3)
	e.bus.Publish(t, m3)
	a.expect("indicator", m3)
}

// TestHeartbeatExpiry: a subscription whose heartbeats stop ends and is
// counted; one that keeps heartbeating stays.
func TestHeartbeatExpiry(t *testing.T) {
	const hb = 500 * time.Millisecond
	e := start(t, setup{app: func(a *zmq.App) { a.HeartbeatTimeout = config.Duration(hb) }})
	base := e.subscriptions(t)
	silent := e.subscribe(t, 0, "stix2/indicator")
	alive := e.subscribe(t, 0, "stix2/indicator")
	start := time.Now()
	for time.Since(start) < 3*hb {
		if status, err := zmqclient.Heartbeat(e.endpoint, alive.p2p(), zmqclient.Timeout); status != zmqclient.StatusSuccess {
			t.Fatalf("heartbeat after %s: %q %v", time.Since(start), status, err)
		}
		time.Sleep(hb / 5) // the heartbeat interval of this client
	}
	bustest.Eventually(t, "the silent subscription to expire", func() bool { return e.app.Stats().Expired == 1 })
	if status, _ := zmqclient.Heartbeat(e.endpoint, silent.p2p(), zmqclient.Timeout); status != zmqclient.StatusError {
		t.Fatalf("heartbeat of an expired subscription: %q", status)
	}
	if n := e.subscriptions(t); n != base+1 {
		t.Fatalf("%d subscriptions, want %d", n, base+1)
	}
	if e.log.count("subscription expired") != 1 || !strings.Contains(logLine(e, "subscription expired"), silent.p2p()) {
		t.Errorf("no log line for the expiry")
	}
	m := bustest.Indicator(t, 1)
	e.bus.Publish(t, m)
	alive.expect("indicator", m)
}

func logLine(e *env, substr string) string {
	e.log.mu.Lock()
	defer e.log.mu.Unlock()
	for _, l := range strings.Split(e.log.b.String(), "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}

// TestSlowJoiner: what is published between an app's subscribe and its SUB
// socket connecting is held, not lost.
func TestSlowJoiner(t *testing.T) {
	e := start(t, setup{})
	a := e.subscribeOnly(t, 0, "stix2/indicator")
	var sent [][]byte
	for i := 0; i < 200; i++ {
		m := bustest.Indicator(t, i)
		sent = append(sent, m)
		e.bus.Publish(t, m)
	}
	bustest.Eventually(t, "the messages to be held", func() bool { return statsOf(t, e.app, a.p2p()).Held == 200 })
	a.connect()
	for _, m := range sent {
		a.expect("indicator", m)
	}
	bustest.Eventually(t, "the counters to settle", func() bool {
		s := statsOf(t, e.app, a.p2p())
		return s.Sent == 200 && s.Held == 0
	})
	if s := statsOf(t, e.app, a.p2p()); s.Dropped() != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestDropCounters: an app that does not take its messages loses the oldest
// ones once the plugin's and the bus's queues are full, and every loss is
// counted and reported for that subscription.
func TestDropCounters(t *testing.T) {
	e := start(t, setup{
		app: func(a *zmq.App) { a.MaxPending = 5; a.StatsInterval = config.Duration(20 * time.Millisecond) },
		bus: func(c *config.Config) { c.Bus.Outbox = 10 },
	})
	a := e.subscribeOnly(t, 0, "stix2/indicator")
	const n = 100
	for i := 0; i < n; i++ {
		e.bus.Publish(t, bustest.Indicator(t, i))
	}
	bustest.Eventually(t, "every message to be held or dropped", func() bool {
		s := statsOf(t, e.app, a.p2p())
		return s.Held == 5 && s.Bus.Dropped["overflow"] > 0 && s.Bus.Dropped["overflow"]+uint64(s.Bus.Queued)+5+1 >= n
	})
	bustest.Eventually(t, "the drops to be logged", func() bool {
		return strings.Contains(logLine(e, "messages for an app were dropped"), a.p2p())
	})
	dropped := statsOf(t, e.app, a.p2p()).Bus.Dropped["overflow"]
	a.connect()
	last, got := -1, 0
	for uint64(got)+dropped < n {
		_, payload := a.next()
		seq := bustest.Seq(t, payload)
		if seq <= last {
			t.Fatalf("message %d after %d", seq, last)
		}
		last, got = seq, got+1
	}
	if last != n-1 {
		t.Fatalf("the newest message was not kept: last %d", last)
	}
	// The counters follow the send; the client may see the frame first.
	bustest.Eventually(t, "the counters to settle", func() bool {
		s := statsOf(t, e.app, a.p2p())
		return s.Sent == uint64(got) && s.Held == 0
	})
	if s := statsOf(t, e.app, a.p2p()); s.Dropped() != dropped || uint64(got)+s.Dropped() != n {
		t.Errorf("stats %+v: received %d, dropped %d of %d", s, got, dropped, n)
	}
}

// TestFullQueueHolds: a connected app that reads slowly fills zmq's queue
// (send_hwm); the rest waits in the plugin instead of being dropped.
func TestFullQueueHolds(t *testing.T) {
	e := start(t, setup{
		app: func(a *zmq.App) { a.SendHWM = 10 },
		bus: func(c *config.Config) { c.Bus.Outbox = 100000 },
	})
	a := e.subscribeOnly(t, 0, "stix2/indicator")
	recv, err := zmqclient.NewReceiver("127.0.0.1", a.reply.PubPort, a.p2p(), 10)
	if err != nil {
		t.Fatal(err)
	}
	a.recv = recv
	t.Cleanup(func() { _ = recv.Close() })
	m0 := bustest.Indicator(t, 0)
	e.bus.Publish(t, m0)
	a.expect("indicator", m0)
	// More than zmq's queues and the kernel's socket buffers hold.
	const n = 30000
	for i := 1; i <= n; i++ {
		e.bus.Publish(t, bustest.Indicator(t, i))
	}
	bustest.Eventually(t, "zmq's queue to refuse", func() bool {
		s := statsOf(t, e.app, a.p2p())
		return s.Held > 0 && s.Bus.Queued+int(s.Held)+int(s.Sent) > n-100
	})
	for i := 1; i <= n; i++ {
		_, payload := a.next()
		if seq := bustest.Seq(t, payload); seq != i {
			t.Fatalf("got message %d, want %d", seq, i)
		}
	}
	bustest.Eventually(t, "the counters to settle", func() bool { return statsOf(t, e.app, a.p2p()).Sent == n+1 })
	if s := statsOf(t, e.app, a.p2p()); s.Dropped() != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestEchoSuppression: with suppress_echo, an object goes back to the apps
// connected from other addresses, not to those at its publisher's.
func TestEchoSuppression(t *testing.T) {
	e := start(t, setup{app: func(a *zmq.App) { a.SuppressEcho = true; a.Host = "*" }})
	a := e.subscribe(t, 0, "stix2/indicator") // from 127.0.0.1
	b := e.subscribeOnly(t, 0, "stix2/indicator")
	// b's SUB socket connects from 127.0.0.2 (all of 127/8 is loopback).
	sock, err := zmq4.NewSocket(zmq4.SUB)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sock.Close() }()
	_ = sock.SetLinger(0)
	_ = sock.SetRcvtimeo(timeout)
	if err := sock.Connect(fmt.Sprintf("tcp://127.0.0.2:0;127.0.0.1:%d", b.reply.PubPort)); err != nil {
		t.Fatal(err)
	}
	if err := sock.SetSubscribe(b.p2p()); err != nil {
		t.Fatal(err)
	}
	bNext := func() string {
		t.Helper()
		f, err := sock.Recv(0)
		if err != nil {
			t.Fatalf("b: %v", err)
		}
		return f
	}
	m0 := bustest.Indicator(t, 0) // from the bus: an echo of nobody
	e.bus.Publish(t, m0)
	a.expect("indicator", m0)
	if f := bNext(); f != b.p2p()+"indicator "+string(m0) {
		t.Fatalf("b got %q", f)
	}

	p := e.publisher(t) // from 127.0.0.1, like a
	m1 := bustest.Indicator(t, 1)
	if err := p.Publish("stix2/indicator", m1); err != nil {
		t.Fatal(err)
	}
	if f := bNext(); f != b.p2p()+"indicator "+string(m1) {
		t.Fatalf("b got %q, want m1", f)
	}
	m2 := bustest.Indicator(t, 2)
	e.bus.Publish(t, m2)
	a.expect("indicator", m2) // not m1: that was a's own address
	if f := bNext(); f != b.p2p()+"indicator "+string(m2) {
		t.Fatalf("b got %q, want m2", f)
	}
	if s := statsOf(t, e.app, a.p2p()); s.EchoesSuppressed != 1 || s.Dropped() != 0 {
		t.Errorf("a: %+v", s)
	}
	if s := statsOf(t, e.app, b.p2p()); s.EchoesSuppressed != 0 {
		t.Errorf("b: %+v", s)
	}
}

// TestHostName: a host name is resolved and bound (the original's libzmq
// refused "localhost").
func TestHostName(t *testing.T) {
	if _, err := net.LookupHost("localhost"); err != nil {
		t.Fatalf("this machine cannot resolve localhost: %v", err)
	}
	e := start(t, setup{app: func(a *zmq.App) { a.Host = "localhost" }})
	manage, _, _ := e.app.Ports()
	e.endpoint = fmt.Sprintf("localhost:%d", manage)
	r, err := zmqclient.Subscribe(e.endpoint, []string{"stix2/indicator"}, 0, zmqclient.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	recv, err := zmqclient.NewReceiver("localhost", r.PubPort, r.Topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = recv.Close() }()
	m := bustest.Indicator(t, 1)
	e.bus.Publish(t, m)
	topic, payload, err := recv.Receive(timeout)
	if err != nil || topic != r.Topic+"indicator" || string(payload) != string(m) {
		t.Fatalf("%q %s %v", topic, payload, err)
	}
}

// TestUnsubscribe: an unsubscribed app's bus subscription is gone.
func TestUnsubscribe(t *testing.T) {
	e := start(t, setup{})
	base := e.subscriptions(t)
	a := e.subscribe(t, 0, "stix2/indicator")
	if n := e.subscriptions(t); n != base+1 {
		t.Fatalf("%d subscriptions", n)
	}
	if status, err := zmqclient.Unsubscribe(e.endpoint, a.p2p(), zmqclient.Timeout); status != zmqclient.StatusSuccess {
		t.Fatalf("%q %v", status, err)
	}
	if n := e.subscriptions(t); n != base {
		t.Fatalf("%d subscriptions after unsubscribe, want %d", n, base)
	}
	if len(e.app.Stats().Subscriptions) != 0 {
		t.Fatal("the app still lists the subscription")
	}
}

// TestBindFailure: a port in use fails Run with an error that says which.
func TestBindFailure(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	port := l.Addr().(*net.TCPAddr).Port
	app := zmq.New()
	app.Manage, app.Pub, app.Sub = port, 0, 0
	if err := app.Init(); err != nil {
		t.Fatal(err)
	}
	err = app.Run(context.Background(), nopBus{})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("zmq: bind tcp://127.0.0.1:%d", port)) {
		t.Fatalf("Run: %v", err)
	}
}

// nopBus is a bus that is never reached: Run fails before it uses it.
type nopBus struct{ plugins.Bus }

func (nopBus) Logger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestInit(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*zmq.App)
		want string
	}{
		{"defaults", func(*zmq.App) {}, ""},
		{"host name", func(a *zmq.App) { a.Host = "bus.example.org" }, ""},
		{"IPv6", func(a *zmq.App) { a.Host = "::1" }, ""},
		{"all interfaces", func(a *zmq.App) { a.Host = "*" }, ""},
		{"free ports", func(a *zmq.App) { a.Manage, a.Pub, a.Sub = 0, 0, 0 }, ""},
		{"no expiry", func(a *zmq.App) { a.HeartbeatTimeout = 0 }, ""},
		{"empty host", func(a *zmq.App) { a.Host = "" }, "host is empty"},
		{"bad host", func(a *zmq.App) { a.Host = "bus example" }, `host "bus example"`},
		{"port range", func(a *zmq.App) { a.Pub = 70000 }, "pub port 70000"},
		{"negative port", func(a *zmq.App) { a.Sub = -1 }, "sub port -1"},
		{"same port", func(a *zmq.App) { a.Sub = a.Pub }, "pub and sub both use port 13371"},
		{"max_pending", func(a *zmq.App) { a.MaxPending = 0 }, "max_pending 0"},
		{"send_hwm", func(a *zmq.App) { a.SendHWM = 0 }, "send_hwm 0"},
		{"receive_hwm", func(a *zmq.App) { a.ReceiveHWM = -5 }, "receive_hwm -5"},
		{"tiny heartbeat timeout", func(a *zmq.App) { a.HeartbeatTimeout = config.Duration(time.Millisecond) }, "heartbeat_timeout 1ms"},
	} {
		a := zmq.New()
		c.edit(a)
		err := a.Init()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "zmq: ")):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if err := (&zmq.App{}).Init(); err == nil {
		t.Error("a zero App passes Init")
	}
}

// TestIPv6: the app binds an IPv6 address, and clients reach it.
func TestIPv6(t *testing.T) {
	e := start(t, setup{app: func(a *zmq.App) { a.Host = "::1" }})
	manage, _, _ := e.app.Ports()
	e.endpoint = fmt.Sprintf("[::1]:%d", manage)
	r, err := zmqclient.Subscribe(e.endpoint, []string{"stix2/indicator"}, 0, zmqclient.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	recv, err := zmqclient.NewReceiver("::1", r.PubPort, r.Topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = recv.Close() }()
	p, err := zmqclient.NewPublisher("::1", r.SubPort, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close(time.Second) }()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	m := bustest.Indicator(t, 1)
	if err := p.Publish("stix2/indicator", m); err != nil {
		t.Fatal(err)
	}
	topic, payload, err := recv.Receive(timeout)
	if err != nil || topic != r.Topic+"indicator" || string(payload) != string(m) {
		t.Fatalf("%q %s %v", topic, payload, err)
	}
}

// TestSnapshotRequestSkipped: an app that holds max_pending messages already
// is not sent a snapshot request, and that is counted; an app that is not
// connected yet but has room gets it once it connects.
func TestSnapshotRequestSkipped(t *testing.T) {
	e := start(t, setup{app: func(a *zmq.App) { a.MaxPending = 1 }})
	full := e.subscribeOnly(t, 0, "stix2/indicator")
	later := e.subscribeOnly(t, 0, "stix2/sighting")
	e.bus.Publish(t, bustest.Indicator(t, 1))
	bustest.Eventually(t, "a message to be held", func() bool { return statsOf(t, e.app, full.p2p()).Held == 1 })
	e.subscribe(t, 2, "stix2/indicator")
	bustest.Eventually(t, "the request to be skipped", func() bool {
		return statsOf(t, e.app, full.p2p()).SnapshotRequestsSkipped == 1 && statsOf(t, e.app, later.p2p()).Held == 1
	})
	later.connect()
	topic, raw := later.next()
	if topic != later.p2p()+"snapshotrequest" || !strings.Contains(string(raw), `"snapshot": 172800`) && !strings.Contains(string(raw), `"snapshot":172800`) {
		t.Fatalf("got %q %s", topic, raw)
	}
	if s := statsOf(t, e.app, full.p2p()); s.Dropped() != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestEndedSubscriptionTotals: what was held for an app that never
// connected is thrown away when its subscription ends, and the line that
// logs the end counts it (discarded), at WARN like every drop, whether the
// app unsubscribed or its heartbeats stopped.
func TestEndedSubscriptionTotals(t *testing.T) {
	for _, c := range []struct {
		name, msg string
		setup     setup
		end       func(t *testing.T, e *env, a *app)
	}{
		{"unsubscribe", "app unsubscribed", setup{}, func(t *testing.T, e *env, a *app) {
			if status, err := zmqclient.Unsubscribe(e.endpoint, a.p2p(), zmqclient.Timeout); status != zmqclient.StatusSuccess {
				t.Fatalf("unsubscribe: %q %v", status, err)
			}
		}},
		{"expiry", "subscription expired", setup{app: func(a *zmq.App) { a.HeartbeatTimeout = config.Duration(time.Second) }}, func(t *testing.T, e *env, a *app) {
			bustest.Eventually(t, "the subscription to expire", func() bool { return e.app.Stats().Expired == 1 })
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := start(t, c.setup)
			a := e.subscribeOnly(t, 0, "stix2/indicator") // never connects
			e.bus.Publish(t, bustest.Indicator(t, 1))
			bustest.Eventually(t, "the message to be held", func() bool { return statsOf(t, e.app, a.p2p()).Held == 1 })
			c.end(t, e, a)
			// The line is written before the app gets its reply (or the
			// expiry is counted): its totals are final.
			line := logLine(e, c.msg)
			for _, want := range []string{"level=WARN", "topic=" + a.p2p(), " held=0 ", " dropped=1 ", " discarded=1 "} {
				if !strings.Contains(line, want) {
					t.Fatalf("the end of the subscription logged as\n%s\nwant %q in it", line, want)
				}
			}
			if n := e.log.count(a.p2p()); n != 2 { // subscribed, ended
				t.Errorf("%d log lines name the subscription, want 2", n)
			}
		})
	}
}

// TestStopWithHeldFrames: the bus stops while an app that never connected
// has max_pending messages held and its subscription's sink waits for
// room. Nothing is lost without a count: the held message is discarded, and
// logged as such when the bus ends the subscription; the other two are the
// bus's shutdown drops (the waiting sink returns when its context ends).
// The stop takes about two drain timeouts (the drain barrier's, then the
// subscription's stop step) and the app's Run returns in time: that much
// relies on the bus bounding its drain barrier by drain_timeout too (actors,
// since "the drain barrier waits drain_timeout at most"); before, Stop took
// its caller's whole deadline and then abandoned every app at once.
func TestStopWithHeldFrames(t *testing.T) {
	const drain = time.Second
	e := start(t, setup{
		app:        func(a *zmq.App) { a.MaxPending = 1 },
		bus:        func(c *config.Config) { c.Bus.DrainTimeout = config.Duration(drain) },
		drainFails: true,
	})
	a := e.subscribeOnly(t, 0, "stix2/indicator") // never connects
	const n = 3
	for i := 0; i < n; i++ {
		e.bus.Publish(t, bustest.Indicator(t, i))
	}
	// One held, one in the sink waiting for room, one in the outbox.
	bustest.Eventually(t, "the sink to wait for room", func() bool {
		s := statsOf(t, e.app, a.p2p())
		return s.Held == 1 && s.Bus.Queued == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	begin := time.Now()
	err := e.bus.Daemon.Stop(ctx)
	took := time.Since(begin)
	t.Logf("Stop returned after %s: %v", took.Round(time.Millisecond), err) // the drain barrier cannot pass the waiting sink
	if took > 2*drain+2*time.Second {
		t.Errorf("Stop took %s with drain_timeout %s", took, drain)
	}
	if line := logLine(e, "abandoning it\" app=zmq"); line != "" {
		t.Errorf("the app was abandoned: %s", line)
	}
	if e.log.count("zmq app stopped") != 1 {
		t.Error("Run did not finish")
	}
	bustest.Eventually(t, "the end of the subscription to be logged", func() bool {
		return logLine(e, "subscription ended by the bus") != ""
	})
	line := logLine(e, "subscription ended by the bus")
	for _, want := range []string{"level=WARN", "topic=" + a.p2p(), " sent=0 ", " held=0 ", " discarded=1 "} {
		if !strings.Contains(line, want) {
			t.Fatalf("the end of the subscription logged as\n%s\nwant %q in it", line, want)
		}
	}
	if got := e.bus.Daemon.Stats().Drops["shutdown"]; got != n-1 {
		t.Errorf("the bus dropped %d messages at shutdown, want %d", got, n-1)
	}
}

// TestSnapshotRequestWithFullChannel: while the app's sockets are closed
// (a restart), the channel all subscriptions share with the pub loop fills
// up; a snapshot request for an app holding less than max_pending is held
// for it all the same, not skipped, and arrives once it is back.
func TestSnapshotRequestWithFullChannel(t *testing.T) {
	r := &restartable{ready: make(chan struct{})}
	e := start(t, setup{
		app:  func(a *zmq.App) { a.MaxPending = 5000 },
		wrap: func(a *zmq.App) plugins.App { r.App = a; return r },
	})
	<-r.ready
	a := e.subscribe(t, 0, "stix2/indicator")
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	const n = 4200 // more than the shared channel holds (4096)
	for i := 0; i < n; i++ {
		e.bus.Publish(t, bustest.Indicator(t, i))
	}
	bustest.Eventually(t, "the shared channel to fill", func() bool {
		s := statsOf(t, e.app, a.p2p())
		return s.Held >= 4096 && int(s.Held)+s.Bus.Queued == n
	})
	held := statsOf(t, e.app, a.p2p()).Held
	rec := bustest.NewRecorder("requester")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := e.bus.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{"stix2/sighting"}, Snapshot: 24 * time.Hour, Sink: rec.Sink, Name: rec.Name}); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, "the snapshot request to reach the app", func() bool {
		s := statsOf(t, e.app, a.p2p())
		return s.Held == held+1 || s.SnapshotRequestsSkipped > 0
	})
	if s := statsOf(t, e.app, a.p2p()); s.SnapshotRequestsSkipped != 0 {
		t.Fatalf("the snapshot request was skipped: %+v", s)
	}
	r.launch(context.Background())
	bustest.Eventually(t, "the app to listen again", func() bool { return e.app.Ready() == nil })
	requests, next := 0, 0
	for i := 0; i < n+1; i++ {
		topic, payload := a.next()
		if topic == a.p2p()+"snapshotrequest" {
			requests++
			continue
		}
		if seq := bustest.Seq(t, payload); seq != next {
			t.Fatalf("got message %d, want %d", seq, next)
		}
		next++
	}
	if requests != 1 {
		t.Fatalf("%d snapshot requests", requests)
	}
	bustest.Eventually(t, "the counters to settle", func() bool {
		s := statsOf(t, e.app, a.p2p())
		return s.Sent == n+1 && s.Held == 0
	})
	if s := statsOf(t, e.app, a.p2p()); s.Dropped() != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestBusEndsSubscription: when the bus ends an app's subscription (here its
// actor stops, as when it dies), the app's subscription ends too: what was
// held is discarded and logged, and the next heartbeat answers "error", so
// that the client subscribes again instead of waiting for nothing.
func TestBusEndsSubscription(t *testing.T) {
	e := start(t, setup{})
	a := e.subscribeOnly(t, 0, "stix2/indicator") // never connects
	e.bus.Publish(t, bustest.Indicator(t, 1))
	bustest.Eventually(t, "the message to be held", func() bool { return statsOf(t, e.app, a.p2p()).Held == 1 })
	if err := e.bus.Daemon.KillSubscription(e.app.BusSubscription(a.p2p())); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, "the subscription to end", func() bool { return len(e.app.Stats().Subscriptions) == 0 })
	bustest.Eventually(t, "the end to be logged", func() bool { return logLine(e, "subscription ended by the bus") != "" })
	line := logLine(e, "subscription ended by the bus")
	for _, want := range []string{"level=WARN", "topic=" + a.p2p(), " held=0 ", " discarded=1 "} {
		if !strings.Contains(line, want) {
			t.Fatalf("the end of the subscription logged as\n%s\nwant %q in it", line, want)
		}
	}
	if status, err := zmqclient.Heartbeat(e.endpoint, a.p2p(), zmqclient.Timeout); status != zmqclient.StatusError {
		t.Fatalf("heartbeat for an ended subscription: %q %v", status, err)
	}
}
