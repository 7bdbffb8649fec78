// Package bustest starts real buses in tests: an actor tree with a chosen
// backbone and a probe app whose plugins.Bus the test drives, plus sinks that
// record what they receive and helpers that wait with deadlines instead of
// sleeping. It is a test helper: production code must not import it.
package bustest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/threatbus/threatbus/actors"
	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins"
)

// Timeout bounds every wait of this package.
const Timeout = 15 * time.Second

// Probe is an app plugin that hands its plugins.Bus to the test.
type Probe struct {
	bus chan plugins.Bus
}

// NewProbe returns a probe app.
func NewProbe() *Probe { return &Probe{bus: make(chan plugins.Bus, 1)} }

func (*Probe) SampleConfig() string { return "" }
func (*Probe) Init() error          { return nil }

// Run implements plugins.App.
func (p *Probe) Run(ctx context.Context, bus plugins.Bus) error {
	select {
	case p.bus <- bus:
	default:
	}
	<-ctx.Done()
	return nil
}

// Bus is a running bus with a probe.
type Bus struct {
	plugins.Bus
	Daemon *actors.Daemon
	Config *config.Config
}

// Options tune Start.
type Options struct {
	// Apps are started besides the probe.
	Apps []config.Instance
	// Configure edits the configuration before the bus starts.
	Configure func(*config.Config)
	// Log receives the bus's log; nil discards it unless TBTEST_LOG
	// is set.
	Log io.Writer
}

// Start starts a bus on backbone and stops it when the test ends.
func Start(t testing.TB, backbone plugins.Backbone, opts Options) *Bus {
	t.Helper()
	cfg := config.Defaults()
	cfg.Backbone = config.Instance{Kind: plugins.KindBackbone, Name: "test-backbone", Plugin: backbone}
	probe := NewProbe()
	cfg.Apps = append([]config.Instance{{Kind: plugins.KindApp, Name: "probe", Plugin: probe}}, opts.Apps...)
	cfg.Admin.Listen = "" // tests that want the admin server start it themselves
	if opts.Configure != nil {
		opts.Configure(cfg)
	}
	w := opts.Log
	if w == nil {
		w = io.Discard
		if os.Getenv("TBTEST_LOG") != "" {
			w = os.Stderr
		}
	}
	d, err := actors.Start(cfg, slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("start bus: %v", err)
	}
	b := &Bus{Daemon: d, Config: cfg}
	t.Cleanup(func() { b.Stop(t) })
	select {
	case b.Bus = <-probe.bus:
	case <-time.After(Timeout):
		t.Fatal("probe app did not start")
	}
	return b
}

// Stop stops the bus (again is a no-op) and fails the test if it did not
// drain in time.
func (b *Bus) Stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := b.Daemon.Stop(ctx); err != nil {
		t.Errorf("stop bus: %v", err)
	}
}

// Subscribe subscribes rec to topics and fails the test on error.
func (b *Bus) Subscribe(t testing.TB, rec *Recorder, topics ...string) plugins.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	sub, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: topics, Sink: rec.Sink, Name: rec.Name})
	if err != nil {
		t.Fatalf("subscribe %v: %v", topics, err)
	}
	return sub
}

// Publish publishes payload and fails the test on error. Safe to call from
// any goroutine: it reports with Errorf.
func (b *Bus) Publish(t testing.TB, payload []byte) {
	if err := b.Bus.Publish(context.Background(), payload); err != nil {
		t.Errorf("publish: %v", err)
	}
}

// Recorder is a sink that keeps what it receives.
type Recorder struct {
	Name string
	// Delay, when set, makes the sink slow.
	Delay time.Duration

	mu      sync.Mutex
	cond    *sync.Cond
	got     []*messages.Envelope
	payload map[string]int // payload → times received
}

// NewRecorder returns an empty recorder.
func NewRecorder(name string) *Recorder {
	r := &Recorder{Name: name, payload: map[string]int{}}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// Sink is the plugins.Sink of the recorder.
func (r *Recorder) Sink(ctx context.Context, m *messages.Envelope) error {
	if r.Delay > 0 {
		select {
		case <-time.After(r.Delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	r.got = append(r.got, m)
	r.payload[string(m.Payload)]++
	r.mu.Unlock()
	r.cond.Broadcast()
	return nil
}

// Len returns how many messages arrived.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// Messages returns a copy of what arrived, in order.
func (r *Recorder) Messages() []*messages.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*messages.Envelope{}, r.got...)
}

// Count returns how often payload arrived.
func (r *Recorder) Count(payload []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.payload[string(payload)]
}

// WaitLen waits until at least n messages arrived.
func (r *Recorder) WaitLen(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	timer := time.AfterFunc(Timeout, r.cond.Broadcast)
	defer timer.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %d messages, want %d within %s", r.Name, len(r.got), n, Timeout)
		}
		r.cond.Wait()
	}
}

// Quiet asserts that the count stays at n for d: nothing more arrives.
func (r *Recorder) Quiet(t testing.TB, n int, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	if got := r.Len(); got != n {
		t.Fatalf("%s: got %d messages, want exactly %d", r.Name, got, n)
	}
}

// Eventually polls cond until it holds or Timeout passes.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", Timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var validFrom = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Indicator returns a valid STIX indicator whose pattern carries seq, so
// each call with a new seq gives a distinct payload.
func Indicator(t testing.TB, seq int) []byte {
	t.Helper()
	ind, err := stix.NewIndicator(fmt.Sprintf("[ipv4-addr:value = '10.%d.%d.%d']", seq>>16&255, seq>>8&255, seq&255), validFrom,
		stix.WithProperty("x_seq", json.RawMessage(fmt.Sprint(seq))))
	if err != nil {
		t.Fatalf("indicator: %v", err)
	}
	return ind.Raw
}

// Sighting returns a valid STIX sighting that carries seq.
func Sighting(t testing.TB, seq int) []byte {
	t.Helper()
	s, err := stix.NewSighting("indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", validFrom,
		stix.WithProperty("x_seq", json.RawMessage(fmt.Sprint(seq))))
	if err != nil {
		t.Fatalf("sighting: %v", err)
	}
	return s.Raw
}

// Seq returns the x_seq of a payload made by Indicator or Sighting.
func Seq(t testing.TB, payload []byte) int {
	t.Helper()
	var v struct {
		Seq *int `json:"x_seq"`
	}
	if err := json.Unmarshal(payload, &v); err != nil || v.Seq == nil {
		t.Fatalf("payload without x_seq: %s", payload)
	}
	return *v.Seq
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes, for capturing
// logs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
