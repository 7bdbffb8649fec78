package actors

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

// Reasons a subscriber drops a message, as counted.
const (
	dropOverflow  = "overflow"
	dropSinkError = "sink_error"
	dropClosed    = "closed"
	dropShutdown  = "shutdown"
)

var dropReasons = []string{dropOverflow, dropSinkError, dropClosed, dropShutdown}

// subState is what a subscription's handle and its actor share: counters and
// the current topics, all atomic.
type subState struct {
	id         string // the actor's name under apps: "<app>/sub-$n"
	name       string
	owner      *busHandle
	topics     atomic.Pointer[[]string]
	delivered  atomic.Uint64
	enqueued   atomic.Uint64
	dequeued   atomic.Uint64
	dropped    [4]atomic.Uint64 // indexed like dropReasons
	snapshotID atomic.Pointer[string]
	// acked: the Subscribe call got its answer. A subscription whose caller
	// gave up first is stopped at its deadline, whichever incarnation of
	// the actor is running then.
	acked atomic.Bool
}

func (s *subState) drop(reason string, n uint64) {
	for i, r := range dropReasons {
		if r == reason {
			s.dropped[i].Add(n)
		}
	}
}

func (s *subState) stats() plugins.SubscriptionStats {
	st := plugins.SubscriptionStats{Delivered: s.delivered.Load(), Dropped: map[string]uint64{}}
	for i, r := range dropReasons {
		if n := s.dropped[i].Load(); n > 0 {
			st.Dropped[r] = n
		}
	}
	deq := s.dequeued.Load() // first: enqueued only grows past it
	st.Queued = int(s.enqueued.Load() - deq)
	return st
}

// SubscriptionStatus describes one live subscription.
type SubscriptionStatus struct {
	ID        string            `json:"id"`
	App       string            `json:"app"`
	Name      string            `json:"name"`
	Topics    []string          `json:"topics"`
	Queued    int               `json:"queued"`
	Delivered uint64            `json:"delivered"`
	Dropped   map[string]uint64 `json:"dropped"`
}

func (s *subState) status() SubscriptionStatus {
	st := s.stats()
	return SubscriptionStatus{ID: s.id, App: s.owner.name, Name: s.name, Topics: *s.topics.Load(), Queued: st.Queued, Delivered: st.Delivered, Dropped: st.Dropped}
}

// wants reports whether the subscription still holds a prefix of topic, so
// that nothing of an unsubscribed topic reaches the sink, even if it was
// already queued.
func (s *subState) wants(topic string) bool {
	for _, t := range *s.topics.Load() {
		if strings.HasPrefix(topic, t) {
			return true
		}
	}
	return false
}

// outItem is one entry of the outbox: a message, or a flush marker.
type outItem struct {
	env     *messages.Envelope
	flushed *actor.PID // for a marker: who to tell once everything before it is out
}

// subscriberActor is one subscription. Its mailbox is the outq: the router
// sends it Deliver and never waits. It moves messages into a bounded outbox
// that a writer goroutine drains into the plugin's sink at the sink's pace,
// dropping the oldest message (counted) when the sink falls behind. The
// outbox and the writer belong to the subscription, not to one incarnation
// of the actor: a restart keeps both, and only a stop ends them.
type subscriberActor struct {
	*outbox
	rt       *runtime
	seconds  int64
	replyTo  *actor.PID // the Subscribe call waiting for the ack
	deadline time.Time  // when that call stops waiting
}

// outbox is a subscription's queue and writer.
type outbox struct {
	rt      *runtime
	state   *subState
	sink    plugins.Sink
	q       *ringQueue
	cancel  context.CancelFunc
	done    chan struct{}
	discard atomic.Bool // stopping because the subscription was closed; read by the writer
}

// spawnSubscriber asks the apps actor for a subscriber; the subscriber
// answers replyTo with subscriberReady once the router has acknowledged it.
type spawnSubscriber struct {
	owner   *busHandle
	req     plugins.SubscribeRequest
	replyTo *actor.PID
	// deadline is when the caller stops waiting: a subscriber the router
	// has not acknowledged by then (its Subscribe was lost to a crash)
	// stops, instead of lingering as a subscription nobody holds.
	deadline time.Time
}

// subscribeDeadline tells a subscriber that its caller stopped waiting.
type subscribeDeadline struct{}

type subscriberReady struct {
	pid   *actor.PID
	state *subState
}

// closeSubscription ends a subscription, discarding what is queued.
type closeSubscription struct{}

type subscriptionClosed struct{}

func newSubscriber(rt *runtime, m *spawnSubscriber) (actor.Producer, *subState) {
	st := &subState{name: m.req.Name, owner: m.owner}
	topics := append([]string{}, m.req.Topics...)
	st.topics.Store(&topics)
	ob := &outbox{rt: rt, state: st, sink: m.req.Sink}
	replyTo, deadline := m.replyTo, m.deadline
	return func() actor.Actor {
		a := &subscriberActor{outbox: ob, rt: rt, seconds: int64(m.req.Snapshot / time.Second), replyTo: replyTo, deadline: deadline}
		replyTo = nil // a restarted subscriber re-subscribes without a snapshot or a reply
		return a
	}, st
}

func (s *subscriberActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Deliver:
		s.enqueueAll(m.Envelopes)
	case *messages.Subscribed:
		if m.SnapshotId != "" {
			id := m.SnapshotId
			s.state.snapshotID.Store(&id)
		}
		if s.replyTo != nil {
			if !s.deadline.IsZero() && !time.Now().Before(s.deadline) {
				// Too late: the caller has stopped waiting.
				s.giveUp(ctx)
				return
			}
			ctx.Send(s.replyTo, &subscriberReady{pid: ctx.Self(), state: s.state})
			s.replyTo = nil
			s.state.acked.Store(true)
		}
	case *messages.Unsubscribe:
		remove := map[string]bool{}
		for _, t := range m.Topics {
			remove[t] = true
		}
		var keep []string
		if len(m.Topics) > 0 {
			for _, t := range *s.state.topics.Load() {
				if !remove[t] {
					keep = append(keep, t)
				}
			}
		}
		s.state.topics.Store(&keep)
		m.Subscriber = ctx.Self()
		ctx.Forward(s.rt.router) // the router answers the caller
	case *subscribeDeadline:
		if !s.state.acked.Load() {
			s.giveUp(ctx)
		}
	case *closeSubscription:
		s.discard.Store(true)
		ctx.Respond(&subscriptionClosed{})
		ctx.Stop(ctx.Self())
	case *flushRequest:
		s.enqueueMarker(ctx.Sender())
	case *actor.Started:
		if s.q == nil {
			s.startWriter()
		}
		seconds := s.seconds
		if s.replyTo == nil {
			seconds = 0
		} else if !s.deadline.IsZero() {
			self, root := ctx.Self(), s.rt.root
			time.AfterFunc(time.Until(s.deadline), func() { root.Send(self, &subscribeDeadline{}) })
		}
		ctx.Request(s.rt.router, &messages.Subscribe{Topics: *s.state.topics.Load(), Subscriber: ctx.Self(), SnapshotSeconds: seconds})
	case *actor.Stopping:
		s.stopWriter()
	case *actor.Restarting:
	case *actor.Stopped:
	case *messages.Unsubscribed:
	default:
		s.rt.unexpected("subscriber", m)
	}
}

// giveUp stops a subscription whose Subscribe call got no answer in time:
// the caller got an error, so nobody holds it. Stopping also takes it out of
// the router's table, should the router's ack be merely late.
func (s *subscriberActor) giveUp(ctx actor.Context) {
	s.rt.faults.add("subscriber:not_acknowledged", "subscription", s.state.name)
	s.replyTo = nil
	s.discard.Store(true)
	ctx.Stop(ctx.Self())
}

// enqueueMarker adds a flush marker to the outbox, dropping the oldest
// entry when it is full.
func (s *outbox) enqueueMarker(replyTo *actor.PID) {
	if old, evicted := s.q.push(outItem{flushed: replyTo}); evicted {
		s.retire(old, dropOverflow)
	}
}

// enqueueAll adds the envelopes the subscription still wants to the
// outbox, dropping the oldest entries when it is full.
func (s *outbox) enqueueAll(envs []*messages.Envelope) {
	envs = filter(envs, func(env *messages.Envelope) bool { return s.state.wants(env.Topic) })
	if len(envs) == 0 {
		return
	}
	s.state.enqueued.Add(uint64(len(envs)))
	s.q.pushEnvelopes(envs, func(old outItem) { s.retire(old, dropOverflow) })
}

// retire accounts for an entry that leaves the outbox without reaching the
// sink. A flush marker is answered: what came before it is gone.
func (s *outbox) retire(it outItem, reason string) {
	if it.flushed != nil {
		s.rt.root.Send(it.flushed, &flushed{})
		return
	}
	s.state.dequeued.Add(1)
	s.state.drop(reason, 1)
	s.rt.drops.add(reason, "subscription", s.state.name)
}

type flushed struct{}

func (s *outbox) startWriter() {
	s.q = newRingQueue(s.rt.cfg.Bus.Outbox)
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	s.done = make(chan struct{})
	go s.write(ctx, s.q, s.done)
}

// writeBatch bounds what the writer takes from the outbox at a time: what
// it took can no longer be dropped for newer messages, so it is at most a
// sixteenth of the outbox.
func writeBatch(outbox int) int { return min(256, max(1, outbox/16)) }

// write is the writer goroutine: it owns the sink. It takes the outbox's
// entries a batch at a time, one lock for many messages.
func (s *outbox) write(ctx context.Context, q *ringQueue, done chan<- struct{}) {
	defer close(done)
	n := writeBatch(q.max)
	batch := make([]outItem, 0, n)
	for {
		var closed bool
		batch, closed = q.popN(batch[:0], n)
		if len(batch) == 0 {
			if closed {
				return
			}
			<-q.wake
			continue
		}
		for i := range batch {
			s.writeOne(ctx, batch[i])
			batch[i] = outItem{}
		}
	}
}

func (s *outbox) writeOne(ctx context.Context, it outItem) {
	if it.flushed != nil {
		s.rt.root.Send(it.flushed, &flushed{})
		return
	}
	if ctx.Err() != nil {
		reason := dropShutdown
		if s.discard.Load() {
			reason = dropClosed
		}
		s.retire(it, reason)
		return
	}
	s.state.dequeued.Add(1)
	if !s.state.wants(it.env.Topic) {
		return
	}
	if err := s.callSink(ctx, it.env); err != nil {
		if ctx.Err() != nil { // the sink gave up because we are stopping
			reason := dropShutdown
			if s.discard.Load() {
				reason = dropClosed
			}
			s.state.drop(reason, 1)
			s.rt.drops.add(reason, "subscription", s.state.name)
			return
		}
		s.state.drop(dropSinkError, 1)
		s.rt.drops.add(dropSinkError, "subscription", s.state.name, "error", err)
		return
	}
	s.state.delivered.Add(1)
	s.state.owner.delivered[topicIndex(it.env.Topic)].Add(1)
}

func (s *outbox) callSink(ctx context.Context, env *messages.Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.rt.panics.add("sink:" + s.state.name)
			s.rt.log.Error("subscription sink panicked", "subscription", s.state.name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("sink panicked: %v", r)
		}
	}()
	return s.sink(ctx, env)
}

// stopWriter ends the writer: at once when the subscription was closed,
// after draining the outbox (bounded by the drain timeout) otherwise.
func (s *outbox) stopWriter() {
	if s.q == nil {
		return
	}
	if s.discard.Load() {
		s.cancel()
	}
	s.q.close()
	ctx, cancel := s.rt.drainContext()
	defer cancel()
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancel()
		<-s.done
	}
	s.cancel()
	s.q = nil
}
