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
	sub    plugins.Subscription // set before the client is registered

	peer     atomic.Pointer[string] // the address the app connects from
	lastBeat atomic.Int64           // unix nanoseconds of the last heartbeat
	closed   atomic.Bool

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

	// Owned by the pub loop. gen is the loop generation that last looked at
	// the client: a new loop (a new Run) starts from "not connected".
	gen       uint64
	connected bool
	pending   []outFrame // held frames, oldest first, from head on
	head      int
}

func newClient(p2p string, topics []string, peer string, now time.Time) *client {
	c := &client{p2p: p2p, topics: topics, space: make(chan struct{}, 1)}
	c.peer.Store(&peer)
	c.lastBeat.Store(now.UnixNano())
	return c
}

// outFrame is what the pub loop receives: a frame for a client, or (data
// nil) word that the client's subscription ended. echo is the payload's
// hash when echo suppression is on: the loop checks it when it sends, once
// it knows the address the app's SUB socket connected from.
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
func (s *state) sink(c *client, suppressEcho bool) plugins.Sink {
	return func(ctx context.Context, m *messages.Envelope) error {
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
	select { // the usual case, without the cost of a two-way select
	case s.out <- f:
		return nil
	default:
	}
	select {
	case s.out <- f:
	case <-ctx.Done():
		c.inflight.Add(-1)
		return ctx.Err()
	}
	return nil
}

// offer queues a frame for c without waiting; false when c holds too much.
func (s *state) offer(c *client, data *frameBuf) bool {
	if c.closed.Load() || c.inflight.Load() >= s.maxPending {
		return false
	}
	c.inflight.Add(1)
	select {
	case s.out <- outFrame{c: c, data: data}:
	default:
		c.inflight.Add(-1)
		return false
	}
	return true
}

// release accounts for n frames of c leaving the plugin's hands, and lets a
// waiting sink go on once there is room.
func (s *state) release(c *client, n int64) {
	if v := c.inflight.Add(-n); v < s.maxPending && c.starved.Load() {
		select {
		case c.space <- struct{}{}:
		default:
		}
	}
}

// The registry of clients, shared by the manage loop, the pub loop's
// subscription events, Snapshot and Stats.

func (s *state) add(c *client) {
	s.mu.Lock()
	s.clients[c.p2p] = c
	s.mu.Unlock()
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

// end ends c's subscription (c must already be out of the registry): the bus
// stops delivering, and the pub loop discards what it held for c.
func (s *state) end(ctx context.Context, c *client) error {
	c.closed.Store(true)
	err := c.sub.Close(ctx)
	select {
	case s.out <- outFrame{c: c}:
	case <-ctx.Done():
	}
	// A sink waiting for room must see closed.
	select {
	case c.space <- struct{}{}:
	default:
	}
	return err
}
