package zmq

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

// client is one app's subscription: a private topic backed by a bus
// subscription. Its sink runs on the subscription's goroutine and hands
// frames to the pub loop, which alone touches the PUB socket.
type client struct {
	p2p    string
	topics []string
	sub    plugins.Subscription // set by add, under the registry's lock

	peer     atomic.Pointer[string] // the address the app connects from
	lastBeat atomic.Int64           // unix nanoseconds of the last heartbeat
	// closed: the subscription is ending (the app unsubscribed, it expired,
	// or the bus ended it). Whoever sets it first ends it, once.
	closed atomic.Bool

	// inflight counts frames handed to the pub loop that zmq has not taken
	// yet; the sink waits on space while it is at maxPending, and says so in
	// starved, so that the pub loop signals only when someone waits.
	inflight atomic.Int64
	starved  atomic.Bool
	space    chan struct{}

	sent            atomic.Uint64 // frames zmq accepted
	discarded       atomic.Uint64 // held frames thrown away when the subscription ended
	snapshotSkipped atomic.Uint64 // snapshot requests not queued: too much held
	echoes          atomic.Uint64 // messages not sent back to where they came from
	reported        uint64        // drops at the last report; the manage loop's

	// The end: endMsg is what the final totals are logged with (written
	// before the end is posted); ended says that what was held is gone, so
	// that the last frame still in flight logs them; logged that they were,
	// and endDone is closed then.
	endMsg  string
	ended   atomic.Bool
	logged  atomic.Bool
	endDone chan struct{}
	watch   sync.Once // watches the sink's context, which ends with the subscription

	// Owned by whoever holds the held frames (see state.running): the pub
	// loop while a Run runs. gen is the loop generation that last looked at
	// the client: a new loop (a new Run) starts from "not connected".
	gen       uint64
	connected bool
	pending   []outFrame // held frames, oldest first, from head on
	head      int
}

func newClient(p2p string, topics []string, peer string, now time.Time) *client {
	c := &client{p2p: p2p, topics: topics, space: make(chan struct{}, 1), endDone: make(chan struct{})}
	c.peer.Store(&peer)
	c.lastBeat.Store(now.UnixNano())
	return c
}

// outFrame is what the pub loop receives: a frame for a client, or (data
// nil, only as a posted event) word that the client's subscription ended.
// echo is the payload's hash when echo suppression is on: the loop checks
// it when it sends, once it knows the address the app's SUB socket
// connected from.
type outFrame struct {
	c    *client
	data *frameBuf
	echo uint64
}

// frameBuf holds one frame. zmq copies what it sends, so the pub loop
// recycles the buffer once the frame is sent or discarded: at tens of
// thousands of frames a second the garbage would otherwise cost GC cycles,
// and those show up as latency.
type frameBuf struct{ b []byte }

var framePool = sync.Pool{New: func() any { return &frameBuf{b: make([]byte, 0, 1024)} }}

// recycle returns f to the pool; f must not be used afterwards.
func (f *frameBuf) recycle() {
	if cap(f.b) <= 64<<10 { // keep the pool from pinning huge frames
		framePool.Put(f)
	}
}

var errClosed = errors.New("zmq: the app's subscription has ended")

// frame builds "<p2p><suffix> <json>".
func frame(p2p, suffix string, payload []byte) *frameBuf {
	f := framePool.Get().(*frameBuf)
	b := append(f.b[:0], p2p...)
	b = append(b, suffix...)
	b = append(b, ' ')
	f.b = append(b, payload...)
	return f
}

// sink is the bus sink of c. Only indicators and sightings go to apps:
// snapshot requests reach them through Snapshot (the original never sent
// bus-internal messages either).
//
// The bus gives a subscription's sink one context, which ends with the
// subscription (when the bus stops, or the subscription's actor does): then
// c ends too, and what it held is discarded and counted instead of waiting
// for a Run that will never send it, and the app's next heartbeat gets
// "error", so that it subscribes again.
func (s *state) sink(c *client, suppressEcho bool) plugins.Sink {
	return func(ctx context.Context, m *messages.Envelope) error {
		c.watch.Do(func() { context.AfterFunc(ctx, func() { s.busEnded(c) }) })
		var suffix string
		switch m.Type {
		case messages.TypeIndicator:
			suffix = "indicator"
		case messages.TypeSighting:
			suffix = "sighting"
		default:
			return nil
		}
		f := outFrame{c: c, data: frame(c.p2p, suffix, m.Payload)}
		if suppressEcho {
			f.echo = s.echoes.hash(m.Payload)
		}
		return s.enqueue(ctx, f)
	}
}

// enqueue hands a frame to the pub loop, waiting while maxPending frames of
// c are held. Waiting is what turns a slow or absent app into a full
// subscription outbox, where the bus drops and counts per subscription.
// Every wait ends with ctx: the bus ends it at its stop step's drain
// timeout, or at once when the subscription is closed, and counts the
// message (shutdown, closed).
func (s *state) enqueue(ctx context.Context, f outFrame) error {
	c := f.c
	for c.inflight.Load() >= s.maxPending {
		if c.closed.Load() {
			return errClosed
		}
		// Announce the wait, then look again: release decrements first and
		// reads starved second, so one of the two sees the other.
		c.starved.Store(true)
		if c.inflight.Load() < s.maxPending {
			c.starved.Store(false)
			break
		}
		select {
		case <-c.space:
		case <-ctx.Done():
			c.starved.Store(false)
			return ctx.Err()
		}
		c.starved.Store(false)
	}
	if c.closed.Load() {
		return errClosed
	}
	c.inflight.Add(1)
	// Look again: an end that did not see this frame in inflight must not
	// get it afterwards, or its totals would miss it.
	if c.closed.Load() {
		s.release(c, 1)
		return errClosed
	}
	select { // the usual case, without the cost of a two-way select
	case s.out <- f:
		return nil
	default:
	}
	select {
	case s.out <- f:
	case <-ctx.Done():
		s.release(c, 1)
		f.data.recycle()
		return ctx.Err()
	}
	return nil
}

// offer holds a snapshot request for c; false when c holds maxPending
// frames already, or its subscription is ending. The request goes to the
// holder of c's frames as a posted event, not over the channel all apps
// share: that one may be full of other apps' frames (while no Run takes
// them), which is no reason to skip c.
func (s *state) offer(c *client, data *frameBuf) bool {
	if c.closed.Load() || c.inflight.Load() >= s.maxPending {
		return false
	}
	c.inflight.Add(1)
	s.post(outFrame{c: c, data: data})
	return true
}

// release accounts for n frames of c leaving the plugin's hands, lets a
// waiting sink go on once there is room, and logs the end of c once the
// last frame of an ended subscription is gone.
func (s *state) release(c *client, n int64) {
	if n == 0 {
		return
	}
	v := c.inflight.Add(-n)
	if v < s.maxPending && c.starved.Load() {
		select {
		case c.space <- struct{}{}:
		default:
		}
	}
	if v == 0 && c.ended.Load() {
		s.finish(c)
	}
}

// discard throws away one frame of c, whose subscription is ending.
func (s *state) discard(c *client, f outFrame) {
	c.discarded.Add(1) // before release: it may log the totals
	f.data.recycle()
	s.release(c, 1)
}

// The registry of clients, shared by the manage loop, the pub loop's
// subscription events, Snapshot and Stats.

// add registers c with its subscription; false when the bus ended the
// subscription already (c is ending).
func (s *state) add(c *client, sub plugins.Subscription) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.sub = sub
	s.clients[c.p2p] = c
	return true
}

func (s *state) lookup(p2p string) *client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[p2p]
}

func (s *state) remove(p2p string) *client {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[p2p]
	delete(s.clients, p2p)
	return c
}

func (s *state) list() []*client {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*client, 0, len(s.clients))
	for _, c := range s.clients {
		out = append(out, c)
	}
	return out
}

func (s *state) touchAll(now time.Time) {
	for _, c := range s.list() {
		c.lastBeat.Store(now.UnixNano())
	}
}

// endWait bounds how long an unsubscribe or an expiry waits for the final
// totals to be logged; the pub loop takes microseconds unless the bus is
// stopping.
const endWait = 2 * time.Second

// end ends c's subscription (c must already be out of the registry): the bus
// stops delivering, what was held for c is discarded, and the final totals
// are logged with msg. It returns once they are (or ctx ends, or endWait
// passes), so that they are final when the app gets its reply.
func (s *state) end(ctx context.Context, c *client, msg string) error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil // the bus ended it first, and logs that
	}
	s.wakeSink(c)
	err := c.sub.Close(ctx)
	c.endMsg = msg
	s.post(outFrame{c: c})
	t := time.NewTimer(endWait)
	defer t.Stop()
	select {
	case <-c.endDone:
	case <-ctx.Done():
	case <-t.C:
	}
	return err
}

// busEnded ends c because its bus subscription ended: the bus is stopping,
// or the subscription's actor stopped. A registered c leaves the registry,
// so that the app's next heartbeat gets "error" and it subscribes again.
func (s *state) busEnded(c *client) {
	if !c.closed.CompareAndSwap(false, true) {
		return // ended here: this is our own Close
	}
	s.mu.Lock()
	if s.clients[c.p2p] == c {
		delete(s.clients, c.p2p)
	}
	s.mu.Unlock()
	s.wakeSink(c)
	c.endMsg = "subscription ended by the bus"
	s.post(outFrame{c: c})
}

// wakeSink lets a sink waiting for room see that c is closed.
func (s *state) wakeSink(c *client) {
	select {
	case c.space <- struct{}{}:
	default:
	}
}

// post hands an event (a snapshot request for a client, or the end of its
// subscription) to whoever holds the clients' frames: the pub loop while a
// Run runs, else post itself. The channel the sinks feed is no place for
// them: it may be full, and nothing drains it between Runs.
func (s *state) post(ev outFrame) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.serveIdle()
}

// serveIdle handles the posted events when no Run holds the clients'
// frames, taking its place for a moment. A Run that holds them handles the
// events itself, and calls serveIdle again once it has let go, for what was
// posted too late for it.
func (s *state) serveIdle() {
	for {
		select {
		case s.running <- struct{}{}:
		default:
			return // a Run (or another serveIdle) holds them
		}
		s.serveEvents(nil)
		<-s.running
		s.mu.Lock()
		more := len(s.events) > 0
		s.mu.Unlock()
		if !more {
			return
		}
	}
}

// serveEvents handles the posted events; l is the running pub loop, or nil
// when there is none (the frames then stay held for the next one). Only the
// holder of the clients' frames calls it.
func (s *state) serveEvents(l *pubLoop) {
	s.mu.Lock()
	evs := s.events
	s.events = nil
	s.mu.Unlock()
	for _, ev := range evs {
		switch {
		case l != nil:
			l.handle(ev)
		case ev.data == nil:
			s.endHeld(ev.c)
		case ev.c.closed.Load():
			s.discard(ev.c, ev)
		default:
			// The next pub loop sends it once the app is connected.
			ev.c.pending = append(ev.c.pending, ev)
		}
	}
}

// endHeld discards what is held for c, whose subscription ended, and logs
// its totals once nothing of c is in flight any more: at once, as a rule;
// else when the last frame the sink was handing over arrives and is
// discarded too. Only the holder of the clients' frames calls it.
func (s *state) endHeld(c *client) {
	n := len(c.pending) - c.head
	for _, p := range c.pending[c.head:] {
		p.data.recycle()
	}
	c.pending, c.head = nil, 0
	c.discarded.Add(uint64(n))
	s.mu.Lock()
	s.ending[c] = struct{}{}
	s.mu.Unlock()
	c.ended.Store(true) // before release: release may log the totals
	s.release(c, int64(n))
	if c.inflight.Load() == 0 {
		s.finish(c)
	}
}

// finish logs the final totals of an ended subscription, once.
func (s *state) finish(c *client) {
	if !c.logged.CompareAndSwap(false, true) {
		return
	}
	s.mu.Lock()
	delete(s.ending, c)
	s.mu.Unlock()
	s.logEnd(s.logger(), c, c.endMsg)
	close(c.endDone)
}

// finishAll logs the ended subscriptions whose last frames are still on
// their way (the pub loop stopped before they arrived) with what they hold
// now: the loop of the next Run discards those, but there may be none.
func (s *state) finishAll() {
	s.mu.Lock()
	cs := make([]*client, 0, len(s.ending))
	for c := range s.ending {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		s.finish(c)
	}
}
