package zeek

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/apps/zeek/zeektest"
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

const (
	// testdata is shared/testdata, seen from this package.
	testdata   = "../../../../shared/testdata"
	schemaPath = testdata + "/zeek-websocket/v1-broker-out.schema.json"
	scriptPath = "threatbus.zeek"
)

// fakeZeek starts a fake Zeek running threatbus.zeek. It fails the test at
// the end if the bus sent anything that does not match Broker's schema.
func fakeZeek(t *testing.T, opts zeektest.Options) *zeektest.Server {
	t.Helper()
	opts.Script, opts.Schema = scriptPath, schemaPath
	if os.Getenv("TBTEST_LOG") != "" {
		opts.Logf = t.Logf
	}
	z := zeektest.Start(t, opts)
	t.Cleanup(func() {
		for _, inv := range z.Invalid() {
			t.Errorf("the bus sent a message that fails Broker's schema: %s", inv)
		}
	})
	return z
}

// env is a running bus with a Zeek app dialing fake Zeeks.
type env struct {
	bus   *bustest.Bus
	app   *App
	zeeks []*zeektest.Server
	log   *bustest.SyncBuffer
}

type setup struct {
	zeeks []zeektest.Options
	// endpoints, when set, replace the fake Zeeks' URLs in the config.
	endpoints []string
	app       func(*App)
	apps      []config.Instance // besides the Zeek app
	bus       func(*config.Config)
	// noWait skips waiting for every fake Zeek to be subscribed.
	noWait bool
}

func start(t *testing.T, s setup) *env {
	t.Helper()
	e := &env{log: &bustest.SyncBuffer{}}
	app := New()
	for _, o := range s.zeeks {
		z := fakeZeek(t, o)
		e.zeeks = append(e.zeeks, z)
		app.Endpoints = append(app.Endpoints, z.URL())
	}
	if s.endpoints != nil {
		app.Endpoints = s.endpoints
	}
	app.ReconnectMin = config.Duration(10 * time.Millisecond)
	app.ReconnectMax = config.Duration(200 * time.Millisecond)
	app.ConnectTimeout = config.Duration(5 * time.Second)
	app.StatsInterval = 0
	if s.app != nil {
		s.app(app)
	}
	if err := app.Init(); err != nil {
		t.Fatalf("init: %v", err)
	}
	e.app = app
	t0 := time.Now()
	t.Cleanup(func() {
		if d := time.Since(t0); d > 3*time.Second {
			t.Logf("slow test (%s); the bus's log:\n%s", d, e.log.String())
		}
	})
	var w = &logWriter{t: t, buf: e.log}
	e.bus = bustest.Start(t, &inmem.Backbone{}, bustest.Options{
		Apps:      append([]config.Instance{{Kind: plugins.KindApp, Name: Name, Plugin: app}}, s.apps...),
		Configure: s.bus,
		Log:       w,
	})
	if !s.noWait {
		for _, z := range e.zeeks {
			e.waitSubscribed(t, z, "")
		}
	}
	return e
}

// logWriter keeps the bus's log and echoes it with TBTEST_LOG.
type logWriter struct {
	t   *testing.T
	buf *bustest.SyncBuffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	if os.Getenv("TBTEST_LOG") != "" {
		os.Stderr.Write(p)
	}
	return w.buf.Write(p)
}

// waitSubscribed waits until z has an acknowledged p2p topic other than
// old, and returns it.
func (e *env) waitSubscribed(t *testing.T, z *zeektest.Server, old string) string {
	t.Helper()
	z.Wait(t, "the bus to acknowledge a subscription", func() bool {
		return z.Acknowledged() && z.P2P() != old
	})
	return z.P2P()
}

// endpointStats returns the counters of the endpoint of z.
func (e *env) endpointStats(t *testing.T, z *zeektest.Server) EndpointStats {
	t.Helper()
	for _, s := range e.app.Stats().Endpoints {
		if strings.HasPrefix(s.URL, z.URL()+"/") {
			return s
		}
	}
	t.Fatalf("no endpoint for %s", z.URL())
	return EndpointStats{}
}

// publish puts payload on the bus as the probe app.
func (e *env) publish(t *testing.T, payload []byte) {
	t.Helper()
	e.bus.Publish(t, payload)
}

var (
	indicatorTime = time.Date(2021, 1, 15, 15, 29, 5, 0, time.UTC)
	seqMu         sync.Mutex
	seq           int
)

// indicator makes a STIX indicator with a fresh id.
func indicator(t testing.TB, pattern string, opts ...stix.Option) *stix.Indicator {
	t.Helper()
	opts = append([]stix.Option{stix.WithCreated(indicatorTime)}, opts...)
	ind, err := stix.NewIndicator(pattern, indicatorTime, opts...)
	if err != nil {
		t.Fatalf("indicator %s: %v", pattern, err)
	}
	return ind
}

// marker is an indicator whose only purpose is to arrive after everything
// published before it on the same subscription.
func marker(t testing.TB) *stix.Indicator {
	seqMu.Lock()
	seq++
	n := seq
	seqMu.Unlock()
	return indicator(t, fmt.Sprintf("[domain-name:value = 'marker-%d.example']", n))
}

// intelFor returns the intel events z received for a STIX id.
func intelFor(z *zeektest.Server, id string) []zeektest.Intel {
	var out []zeektest.Intel
	for _, in := range z.Intel() {
		if in.ID == id {
			out = append(out, in)
		}
	}
	return out
}

// waitIntel waits until z received intel for id and returns it.
func waitIntel(t *testing.T, z *zeektest.Server, id string) zeektest.Intel {
	t.Helper()
	z.Wait(t, "intel "+id, func() bool { return len(intelFor(z, id)) > 0 })
	return intelFor(z, id)[0]
}

// snapshotApp answers snapshot requests with bodies, and records them.
type snapshotApp struct {
	mu     sync.Mutex
	reqs   []plugins.SnapshotRequest
	bodies [][]byte
}

func (*snapshotApp) SampleConfig() string { return "" }
func (*snapshotApp) Init() error          { return nil }

func (a *snapshotApp) Run(ctx context.Context, _ plugins.Bus) error {
	<-ctx.Done()
	return nil
}

func (a *snapshotApp) Snapshot(_ context.Context, req plugins.SnapshotRequest, reply func([]byte) error) error {
	a.mu.Lock()
	a.reqs = append(a.reqs, req)
	bodies := a.bodies
	a.mu.Unlock()
	for _, b := range bodies {
		if err := reply(b); err != nil {
			return err
		}
	}
	return nil
}

func (a *snapshotApp) requests() []plugins.SnapshotRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]plugins.SnapshotRequest(nil), a.reqs...)
}

// jsonField reads one top-level property of a JSON object.
func jsonField(t testing.TB, b []byte, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %s", b)
	}
	return m[name]
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
