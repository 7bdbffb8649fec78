// Package backbonetest is the conformance suite every backbone must pass:
// exported scenarios that run a real bus on the backbone under test and drive
// it through the plugins.Bus an app sees. A backbone's test calls Run with a
// constructor for fresh, isolated instances (a random exchange, a new
// cluster) and the Features it supports.
//
// Assertions are made on the test's goroutine only; helper goroutines report
// through channels or t.Errorf.
package backbonetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/tests/bustest"
)

// Features declares what a backbone supports, so the suite runs only the
// scenarios that apply.
type Features struct {
	// New returns a fresh backbone, isolated from every other instance New
	// returned (its own exchange, its own cluster).
	New func(t *testing.T) plugins.Backbone
	// Messages per scenario where volume matters; defaults to 1000. Slow
	// transports may lower it.
	Messages int
	// Quiet is how long a scenario waits to be sure nothing more arrives;
	// defaults to 100ms. Transports with latency raise it.
	Quiet time.Duration
}

func (f *Features) defaults() {
	if f.Messages == 0 {
		f.Messages = 1000
	}
	if f.Quiet == 0 {
		f.Quiet = 100 * time.Millisecond
	}
}

// Run runs every scenario.
func Run(t *testing.T, f Features) {
	f.defaults()
	for _, s := range []struct {
		name string
		fn   func(*testing.T, Features)
	}{
		{"PublishSubscribe", PublishSubscribe},
		{"FanOut", FanOut},
		{"PrefixAndIsolation", PrefixAndIsolation},
		{"MultiTopicSubscriber", MultiTopicSubscriber},
		{"Unsubscribe", Unsubscribe},
		{"PerPublisherOrder", PerPublisherOrder},
		{"ConcurrentPublishers", ConcurrentPublishers},
		{"DeadSubscriber", DeadSubscriber},
		{"CloseWhileBusy", CloseWhileBusy},
	} {
		t.Run(s.name, func(t *testing.T) { s.fn(t, f) })
	}
}

func start(t *testing.T, f Features) *bustest.Bus {
	return bustest.Start(t, f.New(t), bustest.Options{})
}

// PublishSubscribe: what is published reaches a subscriber once, byte for
// byte, with topic and type derived from the object.
func PublishSubscribe(t *testing.T, f Features) {
	f.defaults()
	b := start(t, f)
	rec := bustest.NewRecorder("sub")
	b.Subscribe(t, rec, messages.TopicIndicator)
	var sent [][]byte
	for i := 0; i < f.Messages; i++ {
		p := bustest.Indicator(t, i)
		sent = append(sent, p)
		b.Publish(t, p)
	}
	rec.WaitLen(t, len(sent))
	rec.Quiet(t, len(sent), f.Quiet)
	for _, p := range sent {
		if n := rec.Count(p); n != 1 {
			t.Fatalf("payload received %d times, want once: %s", n, p)
		}
	}
	m := rec.Messages()[0]
	if m.Topic != messages.TopicIndicator || m.Type != messages.TypeIndicator || m.Id == "" {
		t.Fatalf("envelope topic=%q type=%q id=%q", m.Topic, m.Type, m.Id)
	}
}

// FanOut: every subscriber of a topic gets every message.
func FanOut(t *testing.T, f Features) {
	f.defaults()
	b := start(t, f)
	const subs = 10
	recs := make([]*bustest.Recorder, subs)
	for i := range recs {
		recs[i] = bustest.NewRecorder("sub")
		b.Subscribe(t, recs[i], messages.TopicIndicator)
	}
	for i := 0; i < f.Messages; i++ {
		b.Publish(t, bustest.Indicator(t, i))
	}
	for _, r := range recs {
		r.WaitLen(t, f.Messages)
	}
	for _, r := range recs {
		r.Quiet(t, f.Messages, f.Quiet)
	}
}

// PrefixAndIsolation: subscriptions match by topic prefix, exactly as
// messages.md says, and nothing else.
func PrefixAndIsolation(t *testing.T, f Features) {
	f.defaults()
	b := start(t, f)
	cases := []struct {
		topic                 string
		indicators, sightings bool
	}{
		{messages.TopicIndicator, true, false},
		{messages.TopicSighting, false, true},
		{"stix2/", true, true},
		{"stix2", true, true},
		{"", true, true},
		{"stix2/ind", true, false},
		{"threatbus/", false, false},
		{"stix2/indicator/x", false, false},
		{"STIX2/", false, false},
	}
	recs := make([]*bustest.Recorder, len(cases))
	for i, c := range cases {
		recs[i] = bustest.NewRecorder("topic " + c.topic)
		b.Subscribe(t, recs[i], c.topic)
	}
	const n = 20
	for i := 0; i < n; i++ {
		b.Publish(t, bustest.Indicator(t, i))
		b.Publish(t, bustest.Sighting(t, i))
	}
	for i, c := range cases {
		want := 0
		if c.indicators {
			want += n
		}
		if c.sightings {
			want += n
		}
		recs[i].WaitLen(t, want)
	}
	for i, c := range cases {
		want := 0
		if c.indicators {
			want += n
		}
		if c.sightings {
			want += n
		}
		recs[i].Quiet(t, want, f.Quiet)
		for _, m := range recs[i].Messages() {
			if (m.Type == messages.TypeIndicator && !c.indicators) || (m.Type == messages.TypeSighting && !c.sightings) {
				t.Fatalf("subscription %q got a %s", c.topic, m.Type)
			}
		}
	}
}

// MultiTopicSubscriber: a subscriber holding several topics gets each
// matching message once, even when several of its topics match.
func MultiTopicSubscriber(t *testing.T, f Features) {
	f.defaults()
	b := start(t, f)
	both := bustest.NewRecorder("indicator+sighting")
	b.Subscribe(t, both, messages.TopicIndicator, messages.TopicSighting)
	overlap := bustest.NewRecorder("overlapping")
	b.Subscribe(t, overlap, messages.TopicIndicator, "stix2/", "")
	const n = 50
	for i := 0; i < n; i++ {
		b.Publish(t, bustest.Indicator(t, i))
		b.Publish(t, bustest.Sighting(t, i))
	}
	both.WaitLen(t, 2*n)
	overlap.WaitLen(t, 2*n)
	both.Quiet(t, 2*n, f.Quiet)
	overlap.Quiet(t, 2*n, f.Quiet)
}

// Unsubscribe: once Unsubscribe returns, no message of the removed topic
// arrives; the remaining topics keep flowing; Close stops everything.
func Unsubscribe(t *testing.T, f Features) {
	f.defaults()
	b := start(t, f)
	rec := bustest.NewRecorder("sub")
	sub := b.Subscribe(t, rec, messages.TopicIndicator, messages.TopicSighting)
	b.Publish(t, bustest.Indicator(t, 0))
	b.Publish(t, bustest.Sighting(t, 0))
	rec.WaitLen(t, 2)

	ctx, cancel := context.WithTimeout(context.Background(), bustest.Timeout)
	defer cancel()
	if err := sub.Unsubscribe(ctx, messages.TopicSighting); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		b.Publish(t, bustest.Sighting(t, i))
	}
	b.Publish(t, bustest.Indicator(t, 1))
	rec.WaitLen(t, 3)
	rec.Quiet(t, 3, f.Quiet)
	for _, m := range rec.Messages()[2:] {
		if m.Type != messages.TypeIndicator {
			t.Fatalf("got a %s after unsubscribing from sightings", m.Type)
		}
	}

	if err := sub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b.Publish(t, bustest.Indicator(t, 2))
	rec.Quiet(t, 3, f.Quiet)
	bustest.Eventually(t, "the router to forget the closed subscription", func() bool {
		n, err := b.Daemon.Subscribers(ctx)
		return err == nil && n == 0
	})
}

// PerPublisherOrder: messages of one publisher arrive in publish order.
func PerPublisherOrder(t *testing.T, f Features) {
	f.defaults()
	b := start(t, f)
	rec := bustest.NewRecorder("sub")
	b.Subscribe(t, rec, "stix2/")
	for i := 0; i < f.Messages; i++ {
		if i%2 == 0 {
			b.Publish(t, bustest.Indicator(t, i))
		} else {
			b.Publish(t, bustest.Sighting(t, i))
		}
	}
	rec.WaitLen(t, f.Messages)
	for i, m := range rec.Messages() {
		if got := bustest.Seq(t, m.Payload); got != i {
			t.Fatalf("message %d carries seq %d: out of order", i, got)
		}
	}
}

// ConcurrentPublishers: many goroutines publishing at once lose nothing,
// duplicate nothing, and keep each publisher's order.
func ConcurrentPublishers(t *testing.T, f Features) {
	f.defaults()
	b := start(t, f)
	rec := bustest.NewRecorder("sub")
	b.Subscribe(t, rec, messages.TopicIndicator)
	const publishers = 8
	per := f.Messages / publishers
	payloads := make([][][]byte, publishers)
	for p := range payloads {
		for i := 0; i < per; i++ {
			payloads[p] = append(payloads[p], bustest.Indicator(t, p<<16|i))
		}
	}
	var wg sync.WaitGroup
	for p := range payloads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, pl := range payloads[p] {
				b.Publish(t, pl)
			}
		}()
	}
	wg.Wait()
	rec.WaitLen(t, publishers*per)
	rec.Quiet(t, publishers*per, f.Quiet)
	next := make([]int, publishers)
	for _, m := range rec.Messages() {
		seq := bustest.Seq(t, m.Payload)
		p, i := seq>>16, seq&0xffff
		if i != next[p] {
			t.Fatalf("publisher %d: got message %d, want %d", p, i, next[p])
		}
		next[p]++
	}
}

// DeadSubscriber: a subscriber actor that dies is removed from the table and
// the others keep receiving.
func DeadSubscriber(t *testing.T, f Features) {
	f.defaults()
	b := start(t, f)
	alive := bustest.NewRecorder("alive")
	b.Subscribe(t, alive, messages.TopicIndicator)
	doomed := bustest.NewRecorder("doomed")
	sub := b.Subscribe(t, doomed, messages.TopicIndicator)
	b.Publish(t, bustest.Indicator(t, 0))
	doomed.WaitLen(t, 1)
	if err := b.Daemon.KillSubscription(sub); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Timeout)
	defer cancel()
	bustest.Eventually(t, "the router to drop the dead subscriber", func() bool {
		n, err := b.Daemon.Subscribers(ctx)
		return err == nil && n == 1
	})
	for i := 1; i <= 10; i++ {
		b.Publish(t, bustest.Indicator(t, i))
	}
	alive.WaitLen(t, 11)
	doomed.Quiet(t, 1, f.Quiet)
	// A message sent to the dead subscriber before the router heard of its
	// death is counted, not silently gone.
	for reason, n := range b.Daemon.Stats().Drops {
		if reason != "dead_letter" || n > 1 {
			t.Fatalf("unexpected drops: %s=%d", reason, n)
		}
	}
}

// CloseWhileBusy: closing subscriptions and stopping the bus while messages
// flow neither hangs nor panics, and a graceful stop delivers everything
// published before it to the subscribers still open.
func CloseWhileBusy(t *testing.T, f Features) {
	f.defaults()
	b := start(t, f)
	keep := bustest.NewRecorder("keep")
	b.Subscribe(t, keep, messages.TopicIndicator)
	closing := bustest.NewRecorder("closing")
	closing.Delay = 50 * time.Microsecond
	sub := b.Subscribe(t, closing, messages.TopicIndicator)

	n := 4 * f.Messages
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			b.Publish(t, bustest.Indicator(t, i))
		}
	}()
	closing.WaitLen(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Timeout)
	defer cancel()
	if err := sub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	b.Stop(t)
	if got := keep.Len(); got != n {
		t.Fatalf("graceful stop: the open subscriber got %d of %d messages", got, n)
	}
	st := sub.Stats()
	if got := closing.Len(); uint64(got) != st.Delivered {
		t.Fatalf("closed subscription: sink saw %d, stats say %d delivered", got, st.Delivered)
	}
}
