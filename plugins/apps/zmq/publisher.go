package zmq

import (
	"context"
	"fmt"
	"strings"
	"time"

	zmq4 "github.com/pebbe/zmq4"
)

// Pub loop tuning.
const (
	outBatch    = 1024                  // frames taken from the channel between looks at the socket
	retryPeriod = time.Millisecond      // how soon held frames are tried again
	eventPeriod = 20 * time.Millisecond // how often an idle loop reads subscription events
	peerAddress = "Peer-Address"        // zmq metadata: the peer's IP
)

// pubLoop is the goroutine that owns the XPUB socket during one Run. Besides
// sending, it reads the socket's subscription events: an app is connected
// once a subscription covering its private topic arrived, and frames for an
// app that is not are held (the slow-joiner fix) instead of being dropped by
// zmq for lack of a subscriber.
type pubLoop struct {
	s       *state
	xpub    *zmq4.Socket
	gen     uint64
	filters map[string]int       // active subscription filters, with counts
	blocked map[*client]struct{} // connected clients with held frames to retry
	waiting map[*client]struct{} // clients with held frames that are not connected
	failed  bool                 // a send error other than EAGAIN was logged
}

// servePub runs the pub loop until ctx ends, and closes the socket. It
// waits on the Go channel the sinks feed, not in zmq: a handoff between
// goroutines is cheaper than waking a thread blocked in zmq_poll, and a
// goroutine blocked in a cgo call would hold a P. Posted events (snapshot
// requests, ends of subscriptions) come beside that channel, with word on
// s.wake. The socket's subscription events are read on a timer: every
// eventPeriod, or every retryPeriod while frames wait for an app to connect
// or for room in its queue.
func (s *state) servePub(ctx context.Context, xpub *zmq4.Socket) error {
	defer func() { _ = xpub.Close() }()
	l := &pubLoop{s: s, xpub: xpub, gen: s.gen.Add(1), filters: map[string]int{},
		blocked: map[*client]struct{}{}, waiting: map[*client]struct{}{}}
	timer := time.NewTimer(eventPeriod)
	defer timer.Stop()
	short := false // the timer runs at retryPeriod
	for {
		select {
		case f := <-s.out:
			l.handle(f)
			l.drain(outBatch - 1)
		case <-s.wake:
			s.serveEvents(l)
		case <-timer.C:
			// Subscription events only on the timer: reading them costs a
			// cgo call, too much for every frame, and a busy channel does
			// not starve the timer (select picks at random).
			if err := l.readEvents(); err != nil {
				return err
			}
			short = len(l.blocked)+len(l.waiting) > 0
			if short {
				timer.Reset(retryPeriod)
			} else {
				timer.Reset(eventPeriod)
			}
		case <-ctx.Done():
			// Hand zmq what is already here; the socket's linger sends it.
			l.drain(cap(s.out))
			s.serveEvents(l)
			l.retry()
			return nil
		}
		if len(l.blocked) > 0 {
			l.retry()
		}
		if !short && len(l.blocked)+len(l.waiting) > 0 {
			short = true
			timer.Reset(retryPeriod)
		}
	}
}

// drain handles up to max frames waiting in the channel and returns how many.
func (l *pubLoop) drain(max int) int {
	for n := 0; n < max; n++ {
		select {
		case f := <-l.s.out:
			l.handle(f)
		default:
			return n
		}
	}
	return max
}

// touch brings c into this loop's generation.
func (l *pubLoop) touch(c *client) {
	if c.gen == l.gen {
		return
	}
	c.gen = l.gen
	c.connected = l.covered(c.p2p)
	l.schedule(c)
}

// schedule files a client with held frames: to send when it is
// connected, to watch for its connection when it is not.
func (l *pubLoop) schedule(c *client) {
	if c.head == len(c.pending) || c.closed.Load() {
		delete(l.blocked, c)
		delete(l.waiting, c)
		return
	}
	if c.connected {
		l.blocked[c] = struct{}{}
		delete(l.waiting, c)
	} else {
		l.waiting[c] = struct{}{}
		delete(l.blocked, c)
	}
}

func (l *pubLoop) handle(f outFrame) {
	c := f.c
	l.touch(c)
	if f.data == nil { // the subscription ended
		delete(l.blocked, c)
		delete(l.waiting, c)
		l.s.endHeld(c)
		return
	}
	if c.closed.Load() {
		l.s.discard(c, f)
		return
	}
	if !c.connected || c.head < len(c.pending) || !l.send(f) {
		c.pending = append(c.pending, f) // keeps the order
		l.schedule(c)
	}
}

// send offers one frame to zmq; false when the app's queue is full. A frame
// the app published itself is dropped here when echoes are suppressed.
func (l *pubLoop) send(f outFrame) bool {
	c := f.c
	if f.echo != 0 {
		if p := c.peer.Load(); p != nil && *p != "" && l.s.echoes.from(f.echo, *p) {
			c.echoes.Add(1)
			l.s.release(c, 1)
			f.data.recycle()
			return true
		}
	}
	_, err := l.xpub.SendBytes(f.data.b, zmq4.DONTWAIT)
	if err == nil {
		c.sent.Add(1)
		l.s.release(c, 1)
		f.data.recycle()
		return true
	}
	if !isEAGAIN(err) && !l.failed {
		l.failed = true
		l.s.logger().Error("sending to apps failed; holding messages", "error", err)
	}
	return false
}

// retry sends held frames of connected clients, oldest first, until zmq
// refuses again.
func (l *pubLoop) retry() {
	for c := range l.blocked {
		if !c.connected || c.closed.Load() {
			l.schedule(c)
			continue
		}
		for c.head < len(c.pending) && l.send(c.pending[c.head]) {
			c.pending[c.head] = outFrame{}
			c.head++
		}
		switch {
		case c.head == len(c.pending):
			c.pending, c.head = c.pending[:0], 0
			delete(l.blocked, c)
		case c.head > 1024 && c.head > len(c.pending)/2:
			c.pending = append(c.pending[:0], c.pending[c.head:]...)
			c.head = 0
		}
	}
}

// readEvents processes the subscription events queued on the XPUB socket.
func (l *pubLoop) readEvents() error {
	for {
		ev, err := l.xpub.GetEvents() // cheap, and no allocation when idle
		if err != nil {
			return fmt.Errorf("zmq: events of the pub socket: %w", err)
		}
		if ev&zmq4.POLLIN == 0 {
			return nil
		}
		msg, md, err := l.xpub.RecvBytesWithMetadata(zmq4.DONTWAIT, peerAddress)
		if err != nil {
			if isEAGAIN(err) {
				return nil
			}
			return fmt.Errorf("zmq: read subscriptions on the pub socket: %w", err)
		}
		if len(msg) == 0 {
			continue
		}
		filter := string(msg[1:])
		switch msg[0] {
		case 1:
			l.filters[filter]++
			if addr := md[peerAddress]; addr != "" {
				if c := l.s.lookup(filter); c != nil {
					c.peer.Store(&addr)
				}
			}
			if l.filters[filter] == 1 {
				l.changed(filter, true)
			}
		case 0:
			if l.filters[filter] == 0 {
				continue
			}
			if l.filters[filter]--; l.filters[filter] == 0 {
				delete(l.filters, filter)
				l.changed(filter, false)
			}
		}
	}
}

// changed updates the clients a filter that appeared or vanished concerns.
func (l *pubLoop) changed(filter string, added bool) {
	for _, c := range l.s.list() {
		if c.gen != l.gen {
			l.touch(c)
			continue
		}
		if !related(filter, c.p2p) {
			continue
		}
		if added {
			c.connected = true
			l.schedule(c)
		} else if c.connected {
			c.connected = l.covered(c.p2p)
			l.schedule(c)
		}
	}
}

// covered reports whether some active filter delivers (part of) what is
// sent on the private topic p2p.
func (l *pubLoop) covered(p2p string) bool {
	for f := range l.filters {
		if related(f, p2p) {
			return true
		}
	}
	return false
}

// related: a filter that is a prefix of p2p receives everything sent to it
// (""; the topic itself); one that extends it ("<p2p>indicator") part of it.
func related(filter, p2p string) bool {
	return strings.HasPrefix(p2p, filter) || strings.HasPrefix(filter, p2p)
}
