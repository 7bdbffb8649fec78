package actors_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/threatbus/threatbus/actors"
	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/inmem"
	"github.com/threatbus/threatbus/tests/bustest"
)

// TestMain checks that a full start/stop of the tree leaves no goroutine
// behind. protoactor's dead-letter throttle goroutine lives for the
// process and is not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottleWithLogger.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	)
}

// start starts a bus whose supervisor restarts within milliseconds.
func start(t *testing.T, opts bustest.Options) *bustest.Bus {
	configure := opts.Configure
	opts.Configure = func(c *config.Config) {
		c.Supervision.BackoffMin = config.Duration(time.Millisecond)
		c.Supervision.BackoffMax = config.Duration(5 * time.Millisecond)
		if configure != nil {
			configure(c)
		}
	}
	return bustest.Start(t, &inmem.Backbone{}, opts)
}

func TestEnvelopeIsVersionedProtobuf(t *testing.T) {
	env := &messages.Envelope{Version: messages.EnvelopeVersion_ENVELOPE_VERSION_1, Id: "a-1", Topic: messages.TopicIndicator,
		Type: messages.TypeIndicator, Payload: []byte(`{"type":"indicator","x":1}`), Origin: "zmq"}
	b, err := proto.Marshal(&messages.Publish{Envelopes: []*messages.Envelope{env}})
	if err != nil {
		t.Fatal(err)
	}
	var back messages.Publish
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Envelopes) != 1 || !proto.Equal(back.Envelopes[0], env) || back.Envelopes[0].Validate() != nil {
		t.Fatalf("round trip: %v", back.Envelopes)
	}
	for name, bad := range map[string]*messages.Envelope{
		"no version":     {Id: "x", Topic: messages.TopicIndicator, Type: messages.TypeIndicator, Payload: []byte("{}")},
		"no id":          {Version: 1, Topic: messages.TopicIndicator, Type: messages.TypeIndicator, Payload: []byte("{}")},
		"topic mismatch": {Version: 1, Id: "x", Topic: messages.TopicIndicator, Type: messages.TypeSighting, Payload: []byte("{}")},
		"unknown type":   {Version: 1, Id: "x", Topic: "x", Type: "identity", Payload: []byte("{}")},
		"no payload":     {Version: 1, Id: "x", Topic: messages.TopicIndicator, Type: messages.TypeIndicator},
	} {
		if bad.Validate() == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}

// TestBadInputIsCountedAndLoggedOnce: malformed envelopes and messages of
// unknown types reaching actors are counted and logged once per cause; the
// tree keeps working.
func TestBadInputIsCountedAndLoggedOnce(t *testing.T) {
	var logBuf bustest.SyncBuffer
	b := start(t, bustest.Options{Log: &logBuf})
	rec := bustest.NewRecorder("sub")
	b.Subscribe(t, rec, "")
	for i := 0; i < 5; i++ {
		b.Daemon.SendTo("router", &messages.Publish{Envelopes: []*messages.Envelope{{Id: "x"}}})
		if i%2 == 0 { // an invalid envelope, or none
			b.Daemon.SendTo("router", &messages.Deliver{Envelopes: []*messages.Envelope{{}}})
		} else {
			b.Daemon.SendTo("router", &messages.Deliver{})
		}
		b.Daemon.SendTo("router", "a string")
		b.Daemon.SendTo("bus", 42)
		b.Daemon.SendTo("apps", struct{}{})
	}
	if err := b.Bus.Publish(context.Background(), []byte(`{"type":"identity","id":"identity--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"}`)); !errors.Is(err, messages.ErrUnknownType) {
		t.Fatalf("publish of an identity: %v, want ErrUnknownType", err)
	}
	if err := b.Bus.Publish(context.Background(), []byte(`{"type":`)); err == nil {
		t.Fatal("publish of truncated JSON succeeded")
	}
	b.Publish(t, bustest.Indicator(t, 1))
	rec.WaitLen(t, 1)

	want := map[string]uint64{
		"router:invalid_publish":            5,
		"router:invalid_delivery":           5,
		"unexpected_message:router:string":  5,
		"unexpected_message:bus:int":        5,
		"unexpected_message:apps:struct {}": 5,
	}
	bustest.Eventually(t, "fault counters", func() bool {
		f := b.Daemon.Stats().Faults
		for k, v := range want {
			if f[k] != v {
				return false
			}
		}
		return true
	})
	log := logBuf.String()
	// protoactor's own INFO lines are filtered: the library logs at WARN.
	if strings.Contains(log, "actor system started") {
		t.Errorf("protoactor INFO logs leak through:\n%s", log)
	}
	for cause := range want {
		if n := strings.Count(log, "cause=\""+cause+"\"") + strings.Count(log, "cause="+cause+" "); n != 1 {
			t.Errorf("cause %s logged %d times, want once\n%s", cause, n, log)
		}
	}
}

// TestCrashedCoreActorsComeBack: the router, the backbone and the bus
// itself restart after a panic, subscriptions stay in force, and the
// process is still there.
func TestCrashedCoreActorsComeBack(t *testing.T) {
	b := start(t, bustest.Options{})
	rec := bustest.NewRecorder("sub")
	b.Subscribe(t, rec, messages.TopicIndicator)
	seq := 0
	for _, who := range []string{"router", "backbone", "router", "apps", "bus", "daemon"} {
		b.Daemon.CrashActor(who)
		bustest.Eventually(t, who+" restart", func() bool {
			for id, n := range b.Daemon.Stats().Restarts {
				actor, _, _ := strings.Cut(id, "|")
				if (actor == who || strings.HasSuffix(actor, "/"+who)) && n > 0 {
					return true
				}
			}
			return false
		})
		// Messages published after the restart reach the subscriber.
		b.Publish(t, bustest.Indicator(t, seq))
		seq++
		rec.WaitLen(t, seq)
	}
	if p := b.Daemon.Stats().Panics; p["router"] != 2 || p["backbone"] != 1 || p["apps"] != 1 || p["bus"] != 1 || p["daemon"] != 1 {
		t.Fatalf("panics counted: %v", p)
	}
}

// failingApp fails its first runs, then serves.
type failingApp struct {
	runs     atomic.Int32
	failures int32
	panics   bool
	bus      chan plugins.Bus
}

func (*failingApp) SampleConfig() string { return "" }
func (*failingApp) Init() error          { return nil }
func (a *failingApp) Run(ctx context.Context, bus plugins.Bus) error {
	n := a.runs.Add(1)
	if n <= a.failures {
		if a.panics {
			panic("boom")
		}
		return errors.New("connection lost")
	}
	a.bus <- bus
	<-ctx.Done()
	return nil
}

// TestFailingAppIsRestartedAndKeepsSubscriptions: a Run that fails or
// panics is restarted by supervision; subscriptions made before survive.
func TestFailingAppIsRestartedAndKeepsSubscriptions(t *testing.T) {
	for _, panics := range []bool{false, true} {
		app := &failingApp{failures: 3, panics: panics, bus: make(chan plugins.Bus, 1)}
		b := start(t, bustest.Options{Apps: []config.Instance{{Kind: plugins.KindApp, Name: "flaky", Plugin: app}}})
		var bus plugins.Bus
		select {
		case bus = <-app.bus:
		case <-time.After(bustest.Timeout):
			t.Fatal("flaky app never came up")
		}
		if got := app.runs.Load(); got != 4 {
			t.Fatalf("Run called %d times, want 4", got)
		}
		rec := bustest.NewRecorder("flaky-sub")
		ctx := context.Background()
		if _, err := bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{"stix2/"}, Sink: rec.Sink}); err != nil {
			t.Fatal(err)
		}
		b.Daemon.CrashActor("apps/flaky")
		bustest.Eventually(t, "flaky to run again", func() bool { return app.runs.Load() == 5 })
		b.Publish(t, bustest.Indicator(t, 0))
		rec.WaitLen(t, 1)
	}
}

// TestAppThatKeepsFailingIsStopped: past the restart limit the app stops for
// good, and the bus keeps serving everyone else.
func TestAppThatKeepsFailingIsStopped(t *testing.T) {
	app := &failingApp{failures: 1 << 30, bus: make(chan plugins.Bus, 1)}
	b := start(t, bustest.Options{Apps: []config.Instance{{Kind: plugins.KindApp, Name: "broken", Plugin: app}}})
	bustest.Eventually(t, "the broken app to be given up", func() bool { return app.runs.Load() >= 11 })
	time.Sleep(100 * time.Millisecond)
	if n := app.runs.Load(); n != 11 {
		t.Fatalf("Run called %d times, want 11 (first run and 10 restarts)", n)
	}
	rec := bustest.NewRecorder("sub")
	b.Subscribe(t, rec, "stix2/")
	b.Publish(t, bustest.Indicator(t, 0))
	rec.WaitLen(t, 1)
}

// snapshotApp answers snapshot requests from a fixed set of objects.
type snapshotApp struct {
	mu       sync.Mutex
	requests []plugins.SnapshotRequest
	answers  map[messages.SnapshotType][][]byte
	replies  chan func(body []byte) error
}

func (*snapshotApp) SampleConfig() string { return "" }
func (*snapshotApp) Init() error          { return nil }
func (*snapshotApp) Run(ctx context.Context, _ plugins.Bus) error {
	<-ctx.Done()
	return nil
}

func (a *snapshotApp) Snapshot(_ context.Context, req plugins.SnapshotRequest, reply func([]byte) error) error {
	a.mu.Lock()
	a.requests = append(a.requests, req)
	a.mu.Unlock()
	for _, body := range a.answers[req.Type] {
		if err := reply(body); err != nil {
			return err
		}
	}
	if a.replies != nil {
		a.replies <- reply
	}
	return nil
}

func (a *snapshotApp) seen() []plugins.SnapshotRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]plugins.SnapshotRequest{}, a.requests...)
}

// TestSnapshotFlow: one id per subscribe, one request per covered type to
// every snapshot-capable app, bodies delivered to the requester only.
func TestSnapshotFlow(t *testing.T) {
	ind, sig := bustest.Indicator(t, 100), bustest.Sighting(t, 200)
	apps := []*snapshotApp{
		{answers: map[messages.SnapshotType][][]byte{messages.SnapshotType_SNAPSHOT_TYPE_INDICATOR: {ind}}},
		{answers: map[messages.SnapshotType][][]byte{messages.SnapshotType_SNAPSHOT_TYPE_SIGHTING: {sig}}},
	}
	b := start(t, bustest.Options{Apps: []config.Instance{
		{Kind: plugins.KindApp, Name: "snap1", Plugin: apps[0]},
		{Kind: plugins.KindApp, Name: "snap2", Plugin: apps[1]},
	}})
	bystander := bustest.NewRecorder("bystander")
	b.Subscribe(t, bystander, "")

	requester := bustest.NewRecorder("requester")
	ctx := context.Background()
	sub, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{"stix2/"}, Snapshot: 3*24*time.Hour + 1500*time.Millisecond, Sink: requester.Sink})
	if err != nil {
		t.Fatal(err)
	}
	if sub.SnapshotID() == "" {
		t.Fatal("no snapshot id")
	}
	requester.WaitLen(t, 2)
	if requester.Count(ind) != 1 || requester.Count(sig) != 1 {
		t.Fatalf("requester got %d/%d", requester.Count(ind), requester.Count(sig))
	}
	for _, a := range apps {
		reqs := a.seen()
		if len(reqs) != 2 {
			t.Fatalf("app saw %d requests, want one per type: %+v", len(reqs), reqs)
		}
		for _, r := range reqs {
			if r.ID != sub.SnapshotID() || r.Window != 3*24*time.Hour+time.Second {
				t.Fatalf("request %+v, want id %s and a window in whole seconds", r, sub.SnapshotID())
			}
		}
	}
	// The bystander subscribed to everything: it sees the requests and the
	// envelopes on their threatbus/ topics, never the bodies as STIX objects.
	bystander.WaitLen(t, 4)
	bystander.Quiet(t, 4, 100*time.Millisecond)
	for _, m := range bystander.Messages() {
		if !strings.HasPrefix(m.Topic, "threatbus/") {
			t.Fatalf("bystander got %s", m.Topic)
		}
	}

	// An indicator-only subscription asks for indicators only.
	only := bustest.NewRecorder("indicators")
	if _, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{messages.TopicIndicator}, Snapshot: time.Hour, Sink: only.Sink}); err != nil {
		t.Fatal(err)
	}
	only.WaitLen(t, 1)
	only.Quiet(t, 1, 100*time.Millisecond)
	// No window, no snapshot.
	none, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{"stix2/"}, Sink: bustest.NewRecorder("none").Sink})
	if err != nil || none.SnapshotID() != "" {
		t.Fatalf("subscribe without window: id %q, err %v", none.SnapshotID(), err)
	}
}

// TestSnapshotBookkeepingExpires: ids expire after the TTL, late answers are
// not delivered, and the table never exceeds max_snapshots.
func TestSnapshotBookkeepingExpires(t *testing.T) {
	app := &snapshotApp{replies: make(chan func([]byte) error, 100)}
	b := start(t, bustest.Options{
		Apps: []config.Instance{{Kind: plugins.KindApp, Name: "snap", Plugin: app}},
		Configure: func(c *config.Config) {
			c.Bus.SnapshotTTL = config.Duration(300 * time.Millisecond)
			c.Bus.MaxSnapshots = 3
		},
	})
	ctx := context.Background()
	late := bustest.NewRecorder("late")
	if _, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{messages.TopicIndicator}, Snapshot: time.Hour, Sink: late.Sink}); err != nil {
		t.Fatal(err)
	}
	reply := <-app.replies
	for i := 0; i < 5; i++ {
		if _, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{messages.TopicIndicator}, Snapshot: time.Hour, Sink: bustest.NewRecorder("x").Sink}); err != nil {
			t.Fatal(err)
		}
		n, err := b.Daemon.Snapshots(ctx)
		if err != nil || n > 3 {
			t.Fatalf("snapshots in flight: %d (%v), cap is 3", n, err)
		}
	}
	bustest.Eventually(t, "snapshots to expire", func() bool {
		n, err := b.Daemon.Snapshots(ctx)
		return err == nil && n == 0
	})
	if err := reply(bustest.Indicator(t, 1)); err != nil {
		t.Fatal(err)
	}
	late.Quiet(t, 0, 100*time.Millisecond)
}

// TestSnapshotOfAGoneRequesterTakesNoRoom: a snapshot whose requester has
// gone is forgotten and leaves room: a new one does not evict a live one.
func TestSnapshotOfAGoneRequesterTakesNoRoom(t *testing.T) {
	app := &snapshotApp{}
	b := start(t, bustest.Options{
		Apps:      []config.Instance{{Kind: plugins.KindApp, Name: "snap", Plugin: app}},
		Configure: func(c *config.Config) { c.Bus.MaxSnapshots = 2 },
	})
	ctx := context.Background()
	sub := func(name string) plugins.Subscription {
		s, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{messages.TopicIndicator}, Snapshot: time.Hour, Sink: bustest.NewRecorder(name).Sink, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sub("a")
	if err := sub("b").Close(ctx); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, "b's snapshot forgotten", func() bool { n, err := b.Daemon.Snapshots(ctx); return err == nil && n == 1 })
	sub("c")
	n, err := b.Daemon.Snapshots(ctx)
	if err != nil || n != 2 {
		t.Fatalf("snapshots in flight %d (%v), want a's and c's", n, err)
	}
	if f := b.Daemon.Stats().Faults["snapshot:evicted_at_capacity"]; f != 0 {
		t.Fatalf("evicted at capacity %d times with room left", f)
	}
}

// TestSlowSubscriberDropsOldestAndCounts: a sink that falls behind loses the
// oldest messages of its own outbox, counted; others are unaffected.
func TestSlowSubscriberDropsOldestAndCounts(t *testing.T) {
	b := start(t, bustest.Options{Configure: func(c *config.Config) { c.Bus.Outbox = 10 }})
	gate := make(chan struct{})
	var got [][]byte
	var mu sync.Mutex
	ctx := context.Background()
	slow, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{"stix2/"}, Name: "slow", Sink: func(ctx context.Context, m *messages.Envelope) error {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		got = append(got, m.Payload)
		mu.Unlock()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	fast := bustest.NewRecorder("fast")
	b.Subscribe(t, fast, "stix2/")
	const n = 100
	for i := 0; i < n; i++ {
		b.Publish(t, bustest.Indicator(t, i))
		fast.WaitLen(t, i+1) // paced, so only the slow sink falls behind
	}
	bustest.Eventually(t, "the slow outbox to overflow", func() bool { return slow.Stats().Dropped["overflow"] >= n-11 })
	close(gate)
	bustest.Eventually(t, "the slow sink to catch up", func() bool {
		st := slow.Stats()
		return st.Delivered+st.Dropped["overflow"] == n
	})
	mu.Lock()
	defer mu.Unlock()
	// What got through is the newest messages, in order.
	last := bustest.Seq(t, got[len(got)-1])
	if last != n-1 {
		t.Fatalf("last delivered seq %d, want %d", last, n-1)
	}
	if b.Daemon.Stats().Drops["overflow"] != slow.Stats().Dropped["overflow"] {
		t.Fatalf("daemon drops %v, subscription %v", b.Daemon.Stats().Drops, slow.Stats())
	}
}

// TestSinkErrorsAndPanicsAreCounted: a failing sink does not kill its
// subscription.
func TestSinkErrorsAndPanicsAreCounted(t *testing.T) {
	b := start(t, bustest.Options{})
	var calls atomic.Int32
	sub, err := b.Bus.Subscribe(context.Background(), plugins.SubscribeRequest{Topics: []string{"stix2/"}, Sink: func(context.Context, *messages.Envelope) error {
		switch calls.Add(1) {
		case 1:
			return errors.New("peer gone")
		case 2:
			panic("sink bug")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		b.Publish(t, bustest.Indicator(t, i))
	}
	bustest.Eventually(t, "three sink calls", func() bool {
		st := sub.Stats()
		return st.Delivered == 1 && st.Dropped["sink_error"] == 2
	})
}

// TestStopDrainsInFlight: a graceful stop delivers every message published
// before it, even to a slowish subscriber.
func TestStopDrainsInFlight(t *testing.T) {
	b := start(t, bustest.Options{})
	rec := bustest.NewRecorder("slowish")
	rec.Delay = 20 * time.Microsecond
	b.Subscribe(t, rec, messages.TopicIndicator)
	const n = 2000
	for i := 0; i < n; i++ {
		b.Publish(t, bustest.Indicator(t, i))
	}
	b.Stop(t)
	if rec.Len() != n {
		t.Fatalf("delivered %d of %d before stop returned", rec.Len(), n)
	}
	if d := b.Daemon.Stats().Drops; len(d) != 0 {
		t.Fatalf("drops: %v", d)
	}
}

func TestStartRejectsMissingBackbone(t *testing.T) {
	if _, err := actors.Start(config.Defaults(), slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("started without a backbone")
	}
}

// TestSinkCancelledByCloseCountsAsClosed: a sink that gives up because its
// subscription is closing is not a sink error.
func TestSinkCancelledByCloseCountsAsClosed(t *testing.T) {
	b := start(t, bustest.Options{})
	entered := make(chan struct{}, 1)
	sub, err := b.Bus.Subscribe(context.Background(), plugins.SubscribeRequest{Topics: []string{"stix2/"}, Sink: func(ctx context.Context, _ *messages.Envelope) error {
		entered <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}})
	if err != nil {
		t.Fatal(err)
	}
	b.Publish(t, bustest.Indicator(t, 0))
	<-entered
	if err := sub.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, "the cancelled message counted as closed", func() bool {
		st := sub.Stats()
		return st.Dropped["closed"] == 1 && st.Dropped["sink_error"] == 0
	})
}

// TestSnapshotAnswersDeduplicated: buses configured alike (RabbitMQ hosts,
// cluster members) answer a request alike. Two apps stand in for them here:
// the requester gets each distinct body once, and the copies are counted.
func TestSnapshotAnswersDeduplicated(t *testing.T) {
	same, other := bustest.Indicator(t, 1), bustest.Indicator(t, 2)
	answers := map[messages.SnapshotType][][]byte{messages.SnapshotType_SNAPSHOT_TYPE_INDICATOR: {same}}
	b := start(t, bustest.Options{Apps: []config.Instance{
		{Kind: plugins.KindApp, Name: "member1", Plugin: &snapshotApp{answers: answers}},
		{Kind: plugins.KindApp, Name: "member2", Plugin: &snapshotApp{answers: answers}},
		{Kind: plugins.KindApp, Name: "member3", Plugin: &snapshotApp{answers: map[messages.SnapshotType][][]byte{
			messages.SnapshotType_SNAPSHOT_TYPE_INDICATOR: {same, other},
		}}},
	}})
	rec := bustest.NewRecorder("requester")
	if _, err := b.Bus.Subscribe(context.Background(), plugins.SubscribeRequest{Topics: []string{messages.TopicIndicator}, Snapshot: time.Hour, Sink: rec.Sink}); err != nil {
		t.Fatal(err)
	}
	rec.WaitLen(t, 2)
	bustest.Eventually(t, "both copies counted", func() bool {
		return b.Daemon.Stats().Deduplicated["snapshot"] == 2
	})
	rec.Quiet(t, 2, 100*time.Millisecond)
	if rec.Count(same) != 1 || rec.Count(other) != 1 {
		t.Fatalf("requester got the shared body %d times and the other %d times, want once each", rec.Count(same), rec.Count(other))
	}
}

// leavingApp's Run leaves a goroutine on its context, then fails.
type leavingApp struct {
	runs     atomic.Int32
	leftover chan struct{} // closed when the first Run's context ends
}

func (*leavingApp) SampleConfig() string { return "" }
func (*leavingApp) Init() error          { return nil }
func (a *leavingApp) Run(ctx context.Context, _ plugins.Bus) error {
	if a.runs.Add(1) == 1 {
		go func() { <-ctx.Done(); close(a.leftover) }()
	}
	return errors.New("lost the connection")
}

// TestFailedRunIsCancelledAtOnce: what a failed Run left on its context ends
// when Run fails, not when the restart comes after its backoff.
func TestFailedRunIsCancelledAtOnce(t *testing.T) {
	app := &leavingApp{leftover: make(chan struct{})}
	start(t, bustest.Options{
		Apps: []config.Instance{{Kind: plugins.KindApp, Name: "failing", Plugin: app}},
		Configure: func(c *config.Config) {
			c.Supervision.BackoffMin = config.Duration(time.Minute)
			c.Supervision.BackoffMax = config.Duration(time.Minute)
		},
	})
	select {
	case <-app.leftover:
	case <-time.After(5 * time.Second):
		t.Fatal("the failed Run's context is still live while its restart waits out the backoff")
	}
}

// TestNoRestartWhileStopping: a restart whose backoff ends while the daemon
// stops (here: while the drain waits for a slow sink) is not carried out.
func TestNoRestartWhileStopping(t *testing.T) {
	app := &leavingApp{leftover: make(chan struct{})}
	b := start(t, bustest.Options{
		Apps: []config.Instance{{Kind: plugins.KindApp, Name: "failing", Plugin: app}},
		Configure: func(c *config.Config) {
			c.Supervision.BackoffMin = config.Duration(300 * time.Millisecond)
			c.Supervision.BackoffMax = config.Duration(300 * time.Millisecond)
		},
	})
	slow := bustest.NewRecorder("slow")
	slow.Delay = 1500 * time.Millisecond
	b.Subscribe(t, slow, messages.TopicIndicator)
	b.Publish(t, bustest.Indicator(t, 0))
	<-app.leftover // the first Run failed; its restart is due in 300ms ± 20%
	b.Stop(t)      // the drain waits for the slow sink past that
	if n := app.runs.Load(); n != 1 {
		t.Fatalf("Run ran %d times; a restart was carried out while stopping", n)
	}
}

// remoteBackbone stands in for a broker: a published message comes back
// through deliver only after a delay. It implements plugins.Flusher.
type remoteBackbone struct {
	mu      sync.Mutex
	deliver func(*messages.Envelope)
	pending sync.WaitGroup
}

func (*remoteBackbone) SampleConfig() string { return "" }
func (*remoteBackbone) Init() error          { return nil }
func (b *remoteBackbone) Start(_ context.Context, deliver func(*messages.Envelope)) error {
	b.mu.Lock()
	b.deliver = deliver
	b.mu.Unlock()
	return nil
}

func (b *remoteBackbone) Publish(_ context.Context, env *messages.Envelope) error {
	b.mu.Lock()
	deliver := b.deliver
	b.mu.Unlock()
	b.pending.Add(1)
	time.AfterFunc(200*time.Millisecond, func() { deliver(env); b.pending.Done() })
	return nil
}

func (b *remoteBackbone) Flush(ctx context.Context) error {
	done := make(chan struct{})
	go func() { b.pending.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *remoteBackbone) Stop(ctx context.Context) error { return b.Flush(ctx) }

// TestDrainFlushesTheBackbone: a graceful stop right after publishing
// delivers what a backbone still held outside the bus (plugins.Flusher),
// instead of dropping it while the subscribers stop.
func TestDrainFlushesTheBackbone(t *testing.T) {
	b := bustest.Start(t, &remoteBackbone{}, bustest.Options{})
	rec := bustest.NewRecorder("sub")
	b.Subscribe(t, rec, messages.TopicIndicator)
	const n = 200
	for i := 0; i < n; i++ {
		b.Publish(t, bustest.Indicator(t, i))
	}
	b.Stop(t)
	if rec.Len() != n {
		t.Fatalf("%d of %d delivered by the graceful stop; drops %v", rec.Len(), n, b.Daemon.Stats().Drops)
	}
}

// loggingBackbone is inmem with a logger of its own (plugins.LogReceiver).
type loggingBackbone struct {
	inmem.Backbone
	log atomic.Pointer[slog.Logger]
}

func (b *loggingBackbone) SetLogger(l *slog.Logger) { b.log.Store(l) }

// TestBackboneGetsTheBusLogger: a backbone that logs writes to the bus's
// log, tagged with its instance name, not to slog.Default.
func TestBackboneGetsTheBusLogger(t *testing.T) {
	var out bustest.SyncBuffer
	bb := &loggingBackbone{}
	bustest.Start(t, bb, bustest.Options{Log: &out})
	// The backbone actor starts beside the apps: the probe being up does
	// not mean the backbone is.
	bustest.Eventually(t, "the bus to pass the backbone a logger", func() bool { return bb.log.Load() != nil })
	bb.log.Load().Info("backbone says hello")
	if !strings.Contains(out.String(), `msg="backbone says hello" plugin=test-backbone`) {
		t.Fatalf("log:\n%s", out.String())
	}
}

// TestPublishBatch: the fast path for validated payloads routes by the
// given types, keeps the batch's order for every subscriber, also when the
// router has to split it between subscribers of different topics, and
// refuses a batch with a type without a topic as a whole.
func TestPublishBatch(t *testing.T) {
	b := start(t, bustest.Options{})
	bp, ok := b.Bus.(plugins.BatchPublisher)
	if !ok {
		t.Fatal("the apps' Bus does not implement plugins.BatchPublisher")
	}
	all, sightings, indicators := bustest.NewRecorder("all"), bustest.NewRecorder("sightings"), bustest.NewRecorder("indicators")
	b.Subscribe(t, all, "")
	b.Subscribe(t, sightings, messages.TopicSighting)
	b.Subscribe(t, indicators, messages.TopicIndicator)
	var objs []plugins.Object
	for i := 0; i < 6; i++ {
		if i%3 == 1 {
			objs = append(objs, plugins.Object{Type: messages.TypeSighting, Payload: bustest.Sighting(t, i)})
		} else {
			objs = append(objs, plugins.Object{Type: messages.TypeIndicator, Payload: bustest.Indicator(t, i)})
		}
	}
	if err := bp.PublishBatch(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	// A batch of one topic: every subscriber of it gets all, in order.
	var burst []plugins.Object
	for i := 10; i < 15; i++ {
		burst = append(burst, plugins.Object{Type: messages.TypeIndicator, Payload: bustest.Indicator(t, i)})
	}
	if err := bp.PublishBatch(context.Background(), burst); err != nil {
		t.Fatal(err)
	}
	want := func(rec *bustest.Recorder, objs []plugins.Object) {
		t.Helper()
		rec.WaitLen(t, len(objs))
		got := rec.Messages()
		if len(got) != len(objs) {
			t.Fatalf("%d messages, want %d", len(got), len(objs))
		}
		for i, o := range objs {
			if got[i].Type != o.Type || !bytes.Equal(got[i].Payload, o.Payload) {
				t.Fatalf("message %d: %s %s, want %s %s", i, got[i].Type, got[i].Payload, o.Type, o.Payload)
			}
		}
	}
	var sig, ind []plugins.Object
	for _, o := range append(append([]plugins.Object{}, objs...), burst...) {
		if o.Type == messages.TypeSighting {
			sig = append(sig, o)
		} else {
			ind = append(ind, o)
		}
	}
	want(all, append(append([]plugins.Object{}, objs...), burst...))
	want(sightings, sig)
	want(indicators, ind)
	bad := []plugins.Object{{Type: messages.TypeIndicator, Payload: bustest.Indicator(t, 20)}, {Type: "identity", Payload: []byte(`{"type":"identity"}`)}}
	if err := bp.PublishBatch(context.Background(), bad); err == nil {
		t.Fatal("a type without a topic was accepted")
	}
	next := bustest.Indicator(t, 21)
	if err := b.Bus.Publish(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	indicators.WaitLen(t, len(ind)+1)
	if got := indicators.Messages(); !bytes.Equal(got[len(ind)].Payload, next) {
		t.Fatalf("after the refused batch: %s", got[len(ind)].Payload)
	}
}

// TestRouterDeduplicatesBatches: a message delivered twice, in one batch or
// in two, reaches a subscriber once and is counted; order is kept.
func TestRouterDeduplicatesBatches(t *testing.T) {
	b := start(t, bustest.Options{})
	rec := bustest.NewRecorder("sub")
	b.Subscribe(t, rec, "")
	env := func(id string, seq int) *messages.Envelope {
		return &messages.Envelope{Version: messages.EnvelopeVersion_ENVELOPE_VERSION_1, Id: id, Topic: messages.TopicIndicator,
			Type: messages.TypeIndicator, Payload: bustest.Indicator(t, seq), Origin: "test"}
	}
	// Ids of another bus process (the per-process window) and of another
	// form (the hashed ring).
	ids := []string{"0123456789abcdef-1", "0123456789abcdef-2", "0123456789abcdef-3", "x-1", "x-2", "x-3"}
	var envs []*messages.Envelope
	for i, id := range ids {
		envs = append(envs, env(id, i))
	}
	for k := 0; k < 2; k++ {
		e := envs[3*k : 3*k+3]
		b.Daemon.SendTo("router", &messages.Deliver{Envelopes: []*messages.Envelope{e[0], e[0], e[1]}})
		b.Daemon.SendTo("router", &messages.Deliver{Envelopes: []*messages.Envelope{e[1], e[2]}})
	}
	rec.WaitLen(t, 6)
	rec.Quiet(t, 6, 100*time.Millisecond)
	for i, m := range rec.Messages() {
		if m.Id != ids[i] {
			t.Fatalf("message %d: %s, want %s", i, m.Id, ids[i])
		}
	}
	if n := b.Daemon.Stats().Deduplicated["router"]; n != 4 {
		t.Fatalf("deduplicated %d, want 4", n)
	}
}

// panickyBackbone is inmem, except that Publish panics once on the
// payload it is told.
type panickyBackbone struct {
	inmem.Backbone
	on     []byte
	struck atomic.Bool
}

func (b *panickyBackbone) Publish(ctx context.Context, env *messages.Envelope) error {
	if bytes.Equal(env.Payload, b.on) && b.struck.CompareAndSwap(false, true) {
		panic("test: backbone fails on one message")
	}
	return b.Backbone.Publish(ctx, env)
}

// TestBackbonePanicLosesOneMessageOfABatch: a backbone that panics on one
// envelope of a batch loses that one, counted; the rest of the batch is
// published after the restart, in order, before anything sent later.
func TestBackbonePanicLosesOneMessageOfABatch(t *testing.T) {
	var payloads [][]byte
	for i := 0; i < 8; i++ {
		payloads = append(payloads, bustest.Indicator(t, i))
	}
	bb := &panickyBackbone{on: payloads[2]}
	b := bustest.Start(t, bb, bustest.Options{Configure: func(c *config.Config) {
		c.Supervision.BackoffMin = config.Duration(time.Millisecond)
		c.Supervision.BackoffMax = config.Duration(5 * time.Millisecond)
	}})
	rec := bustest.NewRecorder("sub")
	b.Subscribe(t, rec, messages.TopicIndicator)
	var objs []plugins.Object
	for _, p := range payloads[:6] {
		objs = append(objs, plugins.Object{Type: messages.TypeIndicator, Payload: p})
	}
	if err := b.Bus.(plugins.BatchPublisher).PublishBatch(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	b.Publish(t, payloads[6])
	b.Publish(t, payloads[7])
	rec.WaitLen(t, 7)
	rec.Quiet(t, 7, 100*time.Millisecond)
	for i, m := range rec.Messages() {
		want := i
		if i >= 2 {
			want = i + 1
		}
		if !bytes.Equal(m.Payload, payloads[want]) {
			t.Fatalf("message %d: %s, want indicator %d", i, m.Payload, want)
		}
	}
	if n := b.Daemon.Stats().Drops["actor_crash"]; n != 1 {
		t.Fatalf("actor_crash %d, want 1", n)
	}
}

// TestDeadLettersCountedPerMessage: a batch sent to an actor that is gone
// (a subscriber between its death and the router hearing of it) loses each
// of its messages, and the dead_letter count says so.
func TestDeadLettersCountedPerMessage(t *testing.T) {
	b := start(t, bustest.Options{})
	var envs []*messages.Envelope
	for i := 0; i < 3; i++ {
		envs = append(envs, &messages.Envelope{Version: messages.EnvelopeVersion_ENVELOPE_VERSION_1, Id: fmt.Sprintf("dl-%d", i),
			Topic: messages.TopicIndicator, Type: messages.TypeIndicator, Payload: bustest.Indicator(t, i), Origin: "test"})
	}
	b.Daemon.SendTo("daemon/bus/apps/gone", &messages.Deliver{Envelopes: envs})
	b.Daemon.SendTo("daemon/bus/apps/gone", &messages.Subscribed{}) // not a bus message: not counted
	deadline := time.Now().Add(5 * time.Second)
	for b.Daemon.Stats().Drops["dead_letter"] < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // and no more
	if n := b.Daemon.Stats().Drops["dead_letter"]; n != 3 {
		t.Fatalf("dead_letter %d, want 3", n)
	}
}

// TestBackboneRestartedWhileStopping: unlike an app's, a backbone restart
// due while the daemon stops is carried out: the drain passes through it.
func TestBackboneRestartedWhileStopping(t *testing.T) {
	b := start(t, bustest.Options{Configure: func(c *config.Config) {
		c.Chaos.Enabled = true
		c.Supervision.BackoffMin = config.Duration(300 * time.Millisecond)
		c.Supervision.BackoffMax = config.Duration(300 * time.Millisecond)
	}})
	rec := bustest.NewRecorder("sub")
	b.Subscribe(t, rec, messages.TopicIndicator)
	if err := b.Daemon.Crash("test-backbone"); err != nil {
		t.Fatal(err)
	}
	b.Publish(t, bustest.Indicator(t, 1)) // waits in the failed backbone's mailbox
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Daemon.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if rec.Len() != 1 {
		t.Fatalf("%d delivered; the message published into the failed backbone was lost", rec.Len())
	}
}

// TestUnacknowledgedSubscriberStops: a Subscribe the router lost (here to
// chaos on every router message) fails for the caller and leaves no
// subscription behind, in the status or anywhere else.
func TestUnacknowledgedSubscriberStops(t *testing.T) {
	b := start(t, bustest.Options{Configure: func(c *config.Config) {
		c.Chaos.Enabled = true
		c.Chaos.Targets = []string{"router"}
		c.Chaos.Probability = 1
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := b.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{messages.TopicIndicator}, Sink: bustest.NewRecorder("lost").Sink})
	if err == nil {
		t.Fatal("subscribe succeeded although the router crashed on it")
	}
	bustest.Eventually(t, "the unacknowledged subscriber to stop", func() bool {
		st, err := b.Daemon.Status(context.Background())
		return err == nil && len(st.Subscriptions) == 0
	})
	if n := b.Daemon.Stats().Faults["subscriber:not_acknowledged"]; n != 1 {
		t.Fatalf("not_acknowledged counted %d times", n)
	}
}

// stuckBackbone is inmem whose Flush and Stop wait until their context
// ends: a broker that is down with messages buffered.
type stuckBackbone struct{ inmem.Backbone }

func (*stuckBackbone) Flush(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
func (b *stuckBackbone) Stop(ctx context.Context) error {
	_ = b.Backbone.Stop(ctx)
	<-ctx.Done()
	return ctx.Err()
}

// TestStopKeepsItsDeadline: the drain and the plugins' Stop share the
// deadline of the daemon's Stop instead of getting drain_timeout each.
func TestStopKeepsItsDeadline(t *testing.T) {
	cfg := config.Defaults()
	cfg.Backbone = config.Instance{Kind: plugins.KindBackbone, Name: "stuck", Plugin: &stuckBackbone{}}
	cfg.Admin.Listen = ""
	cfg.Bus.DrainTimeout = config.Duration(time.Second)
	d, err := actors.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_ = d.Stop(ctx) // reports the drain that did not finish
	if took := time.Since(start); took > 1800*time.Millisecond {
		t.Fatalf("Stop with a 1s deadline took %s", took)
	}
}
