package zmq_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/apps/zmq"
	"github.com/threatbus/threatbus/plugins/apps/zmq/zmqclient"
	"github.com/threatbus/threatbus/plugins/backbones/inmem"
	"github.com/threatbus/threatbus/tests/bustest"
)

// TestMain checks that no test leaves a goroutine behind. protoactor's
// dead-letter throttle goroutine lives for the process and is not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottleWithLogger.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	)
}

// timeout bounds every wait; the clients' own timeout is 5 s.
const timeout = 10 * time.Second

// env is a running bus with a zmq app on free loopback ports.
type env struct {
	bus      *bustest.Bus
	app      *zmq.App
	endpoint string // management endpoint, 127.0.0.1:port
	log      *logBuffer
}

type setup struct {
	app   func(*zmq.App)
	bus   func(*config.Config)
	ports [3]int // manage, pub, sub; zeros pick free ones
	// wrap, when set, is the plugin the bus runs instead of the app.
	wrap func(*zmq.App) plugins.App
	// drainFails: the test stops the bus itself, and its drain cannot
	// finish (a sink waits for an app that never connects). Stop reports
	// that, and again at the cleanup: expected, not a failure.
	drainFails bool
}

func start(t *testing.T, s setup) *env { return startTB(t, s) }

func startB(b *testing.B) *env { return startTB(b, setup{}) }

func startTB(t testing.TB, s setup) *env {
	t.Helper()
	app := zmq.New()
	app.Manage, app.Pub, app.Sub = s.ports[0], s.ports[1], s.ports[2]
	app.StatsInterval = 0
	if s.app != nil {
		s.app(app)
	}
	if err := app.Init(); err != nil {
		t.Fatalf("init: %v", err)
	}
	var plugin plugins.App = app
	if s.wrap != nil {
		plugin = s.wrap(app)
	}
	log := &logBuffer{}
	tb := t
	if s.drainFails {
		tb = tolerateDrainError{t}
	}
	b := bustest.Start(tb, &inmem.Backbone{}, bustest.Options{
		Apps:      []config.Instance{{Kind: plugins.KindApp, Name: "zmq", Plugin: plugin}},
		Configure: s.bus,
		Log:       log,
	})
	bustest.Eventually(t, "the zmq app to listen", func() bool { return app.Ready() == nil })
	manage, _, _ := app.Ports()
	return &env{bus: b, app: app, endpoint: fmt.Sprintf("127.0.0.1:%d", manage), log: log}
}

// tolerateDrainError is a test to which the bus's failed drain at stop is
// no error.
type tolerateDrainError struct{ testing.TB }

func (t tolerateDrainError) Errorf(format string, args ...any) {
	t.Helper()
	if strings.HasPrefix(format, "stop bus:") && strings.Contains(fmt.Sprint(args...), "drain") {
		t.Logf("(expected) "+format, args...)
		return
	}
	t.TB.Errorf(format, args...)
}

// logBuffer collects the bus's log (and echoes it with TBTEST_LOG).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if os.Getenv("TBTEST_LOG") != "" {
		_, _ = os.Stderr.Write(p)
	}
	return l.b.Write(p)
}

func (l *logBuffer) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), substr)
}

var _ io.Writer = (*logBuffer)(nil)

// app is a client as the real ones are: management over fresh REQ sockets,
// a SUB socket on the private topic.
type app struct {
	t     *testing.T
	e     *env
	reply zmqclient.Reply
	recv  *zmqclient.Receiver
}

// subscribe subscribes and connects the SUB socket.
func (e *env) subscribe(t *testing.T, days int, topics ...string) *app {
	t.Helper()
	a := e.subscribeOnly(t, days, topics...)
	a.connect()
	return a
}

// subscribeOnly subscribes without connecting the SUB socket yet.
func (e *env) subscribeOnly(t *testing.T, days int, topics ...string) *app {
	t.Helper()
	r, err := zmqclient.Subscribe(e.endpoint, topics, days, zmqclient.Timeout)
	if err != nil {
		t.Fatalf("subscribe %v: %v", topics, err)
	}
	return &app{t: t, e: e, reply: r}
}

func (a *app) connect() {
	a.t.Helper()
	r, err := zmqclient.NewReceiver("127.0.0.1", a.reply.PubPort, a.reply.Topic, 0)
	if err != nil {
		a.t.Fatal(err)
	}
	a.recv = r
	a.t.Cleanup(func() { _ = r.Close() })
}

func (a *app) p2p() string { return a.reply.Topic }

// next returns the next frame, failing the test after timeout.
func (a *app) next() (string, []byte) {
	a.t.Helper()
	topic, payload, err := a.recv.Receive(timeout)
	if err != nil {
		a.t.Fatalf("%s: receive: %v", a.p2p(), err)
	}
	return topic, payload
}

// expect asserts that the next frame is "<p2p><suffix> <payload>".
func (a *app) expect(suffix string, payload []byte) {
	a.t.Helper()
	topic, got := a.next()
	if topic != a.p2p()+suffix || !bytes.Equal(got, payload) {
		a.t.Fatalf("%s: got %q %s\nwant %q %s", a.p2p(), topic, got, a.p2p()+suffix, payload)
	}
}

// publisher connects a PUB (XPUB, no drop) socket to the bus's sub port and
// waits until the bus is subscribed.
func (e *env) publisher(t *testing.T) *zmqclient.Publisher {
	t.Helper()
	_, _, sub := e.app.Ports()
	p, err := zmqclient.NewPublisher("127.0.0.1", sub, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// request sends raw bytes as a management request and returns the reply.
func (e *env) request(t *testing.T, body []byte) string {
	t.Helper()
	r, err := zmqclient.Request(e.endpoint, body, zmqclient.Timeout)
	if err != nil {
		t.Fatalf("request %q: %v", body, err)
	}
	return string(r)
}

func (e *env) subscriptions(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n, err := e.bus.Daemon.Subscribers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../../../shared/testdata/stix/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// subscribeB subscribes a receiver for a benchmark.
func (e *env) subscribeB(b *testing.B, topics ...string) *zmqclient.Receiver {
	b.Helper()
	r, err := zmqclient.Subscribe(e.endpoint, topics, 0, zmqclient.Timeout)
	if err != nil {
		b.Fatal(err)
	}
	recv, err := zmqclient.NewReceiver("127.0.0.1", r.PubPort, r.Topic, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = recv.Close() })
	return recv
}

func (e *env) publisherB(b *testing.B) *zmqclient.Publisher {
	b.Helper()
	_, _, sub := e.app.Ports()
	p, err := zmqclient.NewPublisher("127.0.0.1", sub, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close(time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	return p
}
