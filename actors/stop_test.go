package actors_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threatbus/threatbus/actors"
	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/inmem"
	"github.com/threatbus/threatbus/tests/bustest"
)

// startBare starts a bus with app as its only app, and leaves stopping it
// to the test: these tests look at what Stop returns and counts.
func startBare(t *testing.T, bb plugins.Backbone, app *feeder, edit func(*config.Config)) (*actors.Daemon, plugins.Bus) {
	t.Helper()
	cfg := config.Defaults()
	cfg.Backbone = config.Instance{Kind: plugins.KindBackbone, Name: "bb", Plugin: bb}
	cfg.Apps = []config.Instance{{Kind: plugins.KindApp, Name: "app", Plugin: app}}
	cfg.Admin.Listen = ""
	if edit != nil {
		edit(cfg)
	}
	d, err := actors.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return d, <-app.bus
}

// slowBackbone loops every message back, after a delay per message.
type slowBackbone struct {
	delay   time.Duration
	deliver func(*messages.Envelope)
}

func (*slowBackbone) SampleConfig() string { return "" }
func (*slowBackbone) Init() error          { return nil }
func (b *slowBackbone) Start(_ context.Context, deliver func(*messages.Envelope)) error {
	b.deliver = deliver
	return nil
}
func (b *slowBackbone) Publish(_ context.Context, env *messages.Envelope) error {
	time.Sleep(b.delay)
	b.deliver(env)
	return nil
}
func (*slowBackbone) Stop(context.Context) error { return nil }

func dropped(d *actors.Daemon) uint64 {
	var n uint64
	for _, v := range d.Stats().Drops {
		n += v
	}
	return n
}

// TestStopCountsWhatMailboxesHeld: a stop whose drain runs out of time
// leaves messages in the router's and the backbone's mailboxes. They are
// lost with the tree, and counted: delivered and dropped add up to what
// was published.
func TestStopCountsWhatMailboxesHeld(t *testing.T) {
	d, bus := startBare(t, &slowBackbone{delay: 20 * time.Millisecond}, newFeeder(t), nil)
	rec := bustest.NewRecorder("sub")
	sub, err := bus.Subscribe(context.Background(), plugins.SubscribeRequest{Topics: []string{""}, Sink: rec.Sink})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := 0; i < n; i++ {
		if err := bus.Publish(context.Background(), bustest.Indicator(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := d.Stop(ctx); err == nil {
		t.Fatal("the drain of 100 messages at 20 ms each did not time out in 300 ms")
	}
	if got := uint64(rec.Len()) + dropped(d); got != n {
		t.Fatalf("published %d, delivered %d + dropped %d (%v): %d lost uncounted %+v", n, rec.Len(), dropped(d), d.Stats().Drops, n-got, sub.Stats())
	}
	if d.Stats().Drops["shutdown"] == 0 {
		t.Fatalf("nothing counted as shutdown: %v", d.Stats().Drops)
	}
}

// feeder hands its plugins.Bus to the test and, once go_ is closed,
// publishes as fast as it can until its context ends; it reports how many
// publishes the bus accepted.
type feeder struct {
	bus       chan plugins.Bus
	go_       chan struct{}
	published chan uint64
	payload   []byte
}

func newFeeder(t *testing.T) *feeder {
	return &feeder{bus: make(chan plugins.Bus, 1), go_: make(chan struct{}), published: make(chan uint64, 1), payload: bustest.Indicator(t, 1)}
}

func (*feeder) SampleConfig() string { return "" }
func (*feeder) Init() error          { return nil }
func (a *feeder) Run(ctx context.Context, bus plugins.Bus) error {
	a.bus <- bus
	select {
	case <-a.go_:
	case <-ctx.Done():
		a.published <- 0
		return nil
	}
	var n uint64
	for ctx.Err() == nil {
		if bus.Publish(ctx, a.payload) == nil {
			n++
		}
	}
	a.published <- n
	return nil
}

// TestPublishDuringStopIsDeliveredOrCounted: an app that keeps publishing
// while the bus stops (the drain only covers what came before Stop) loses
// nothing uncounted.
func TestPublishDuringStopIsDeliveredOrCounted(t *testing.T) {
	app := newFeeder(t)
	d, bus := startBare(t, &inmem.Backbone{}, app, nil)
	rec := bustest.NewRecorder("sub")
	if _, err := bus.Subscribe(context.Background(), plugins.SubscribeRequest{Topics: []string{""}, Sink: rec.Sink}); err != nil {
		t.Fatal(err)
	}
	close(app.go_)
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	n := <-app.published
	if got := uint64(rec.Len()) + dropped(d); got != n {
		t.Fatalf("accepted %d, delivered %d + dropped %d (%v): %d lost uncounted",
			n, rec.Len(), dropped(d), d.Stats().Drops, int64(n)-int64(got))
	}
}

// lingerer takes linger to return once its context ends.
type lingerer struct {
	linger   time.Duration
	returned atomic.Bool
}

func (*lingerer) SampleConfig() string { return "" }
func (*lingerer) Init() error          { return nil }
func (a *lingerer) Run(ctx context.Context, _ plugins.Bus) error {
	<-ctx.Done()
	time.Sleep(a.linger)
	a.returned.Store(true)
	return nil
}

// TestStopWaitsForTheTreeAsLongAsAllowed: an app that takes longer than
// protoactor's fixed 10 s future to return, within drain_timeout and the
// caller's deadline, is waited for.
func TestStopWaitsForTheTreeAsLongAsAllowed(t *testing.T) {
	t.Parallel()
	app := &lingerer{linger: 11 * time.Second}
	b := bustest.Start(t, &inmem.Backbone{}, bustest.Options{
		Apps:      []config.Instance{{Kind: plugins.KindApp, Name: "slow", Plugin: app}},
		Configure: func(c *config.Config) { c.Bus.DrainTimeout = config.Duration(20 * time.Second) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Daemon.Stop(ctx); err != nil {
		t.Fatalf("stop within drain_timeout and the deadline: %v", err)
	}
	if !app.returned.Load() {
		t.Fatal("Stop returned before the app's Run did")
	}
}

// TestEveryBusMessageSentIsReceived: the count of what mailboxes hold,
// which Stop turns into drops, comes back to zero once traffic (fan-out,
// loops through the backbone, snapshot answers, a crash) is done: every
// path that sends a Publish or a Deliver counts it.
func TestEveryBusMessageSentIsReceived(t *testing.T) {
	app := &snapshotApp{replies: make(chan func([]byte) error, 10)}
	b := start(t, bustest.Options{Apps: []config.Instance{{Kind: plugins.KindApp, Name: "snap", Plugin: app}}})
	recs := []*bustest.Recorder{bustest.NewRecorder("a"), bustest.NewRecorder("b")}
	for _, r := range recs {
		b.Subscribe(t, r, messages.TopicIndicator)
	}
	for i := 0; i < 50; i++ {
		b.Publish(t, bustest.Indicator(t, i))
	}
	late := bustest.NewRecorder("late")
	if _, err := b.Bus.Subscribe(context.Background(), plugins.SubscribeRequest{Topics: []string{messages.TopicIndicator}, Snapshot: time.Hour, Sink: late.Sink}); err != nil {
		t.Fatal(err)
	}
	if err := (<-app.replies)(bustest.Indicator(t, 99)); err != nil {
		t.Fatal(err)
	}
	late.WaitLen(t, 1)
	for _, r := range recs {
		r.WaitLen(t, 50)
	}
	b.Daemon.CrashActor("router")
	b.Publish(t, bustest.Indicator(t, 100))
	recs[0].WaitLen(t, 51)
	bustest.Eventually(t, "mailboxes empty", func() bool { return b.Daemon.Queued() == 0 })
}

// TestDrainEndsAtDrainTimeout: a sink that cannot deliver (it waits for its
// context, like one whose peer is gone) holds the stop up for drain_timeout
// and the subscriber's own stop step, not for the caller's whole deadline;
// its message is counted.
func TestDrainEndsAtDrainTimeout(t *testing.T) {
	d, bus := startBare(t, &inmem.Backbone{}, newFeeder(t), func(c *config.Config) {
		c.Bus.DrainTimeout = config.Duration(300 * time.Millisecond)
	})
	blocked := make(chan struct{}, 1)
	stuck := func(ctx context.Context, _ *messages.Envelope) error {
		blocked <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	if _, err := bus.Subscribe(context.Background(), plugins.SubscribeRequest{Topics: []string{""}, Sink: stuck}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(context.Background(), bustest.Indicator(t, 1)); err != nil {
		t.Fatal(err)
	}
	<-blocked
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	if err := d.Stop(ctx); err == nil {
		t.Error("a drain that could not finish reported no error")
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("Stop took %v with drain_timeout 300ms", took)
	}
	if n := d.Stats().Drops["shutdown"]; n != 1 {
		t.Errorf("drops %v, want the stuck message as shutdown", d.Stats().Drops)
	}
}
