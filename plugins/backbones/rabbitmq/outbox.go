package rabbitmq

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// outMsg is one accepted message.
type outMsg struct {
	pub   amqp.Publishing
	own   *ownMsg
	sends int // times sent; only the publisher goroutine touches it
}

// ownMsg tracks one of this host's messages until it comes back from the
// host's queue.
type ownMsg struct {
	id          string
	confirmedAt time.Time // zero until confirmed
	back        bool      // came back, or no longer waited for
}

// outbox holds what Publish accepted until RabbitMQ confirms it, in publish
// order, and the ids of this host's messages until they come back. Publish
// (the bus's backbone actor), the publisher and confirm goroutines and the
// consumer goroutine share it.
type outbox struct {
	mu sync.Mutex
	// msgs are the unconfirmed messages, oldest first. The first sent of
	// them went out on the current channel and await its confirms, in
	// order; the rest wait to be sent.
	msgs ring[*outMsg]
	sent int
	// own are this host's messages not yet back, by id; confirmed lists the
	// confirmed ones in confirm order, to stop waiting for those that never
	// come back (dropped by max_items, purged).
	own       map[string]*ownMsg
	confirmed ring[*ownMsg]
	closed    bool
	// timeout is publish_timeout: how long a confirmed own message is
	// waited for; expired counts those given up on.
	timeout time.Duration
	expired *atomic.Uint64
	// wake is closed (and dropped) on every change a waiter may care about.
	wake chan struct{}
	// kick tells the publisher there may be something to send.
	kick chan struct{}
}

func newOutbox(timeout time.Duration, expired *atomic.Uint64) *outbox {
	return &outbox{own: map[string]*ownMsg{}, kick: make(chan struct{}, 1), timeout: timeout, expired: expired, closed: true}
}

// reopen accepts publishes again after a Stop.
func (o *outbox) reopen() {
	o.mu.Lock()
	o.closed = false
	o.mu.Unlock()
}

// close refuses further publishes.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.signal()
	o.mu.Unlock()
}

// signal wakes the waiters and the publisher. Called with mu held.
func (o *outbox) signal() {
	if o.wake != nil {
		close(o.wake)
		o.wake = nil
	}
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// waitCh returns a channel closed at the next change. Called with mu held.
func (o *outbox) waitCh() <-chan struct{} {
	if o.wake == nil {
		o.wake = make(chan struct{})
	}
	return o.wake
}

// wait releases mu until the next change or until, and takes it again.
func (o *outbox) wait(until time.Time) {
	ch := o.waitCh()
	o.mu.Unlock()
	t := time.NewTimer(time.Until(until))
	select {
	case <-ch:
	case <-t.C:
	}
	t.Stop()
	o.mu.Lock()
}

// notify wakes the waiters after an outside change (a link went up or down).
func (o *outbox) notify() {
	o.mu.Lock()
	o.signal()
	o.mu.Unlock()
}

// accept appends m. While the buffer is full it waits for room, but only
// while connected (room comes from confirms) and until deadline.
func (o *outbox) accept(m *outMsg, limit int, deadline time.Time, connected func() bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		if o.closed {
			return errStopped
		}
		if o.msgs.len() < limit {
			break
		}
		if !connected() || !time.Now().Before(deadline) {
			return errFull
		}
		o.wait(deadline)
	}
	o.msgs.push(m)
	o.own[m.own.id] = m.own
	o.signal()
	return nil
}

// waitInFlight waits until at most max own messages are on their way, but
// only while connected and until deadline. It reports false when it gave up
// at the deadline.
func (o *outbox) waitInFlight(max int, deadline time.Time, timeout time.Duration, connected func() bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.own) > max {
		now := time.Now()
		o.expire(now, timeout)
		if len(o.own) <= max || !connected() || o.closed {
			return true
		}
		if !now.Before(deadline) {
			return false
		}
		until := deadline
		if o.confirmed.len() > 0 {
			if exp := o.confirmed.peek().confirmedAt.Add(timeout); exp.Before(until) {
				until = exp
			}
		}
		o.wait(until)
	}
	return true
}

// expire stops waiting for own messages confirmed longer than timeout ago.
// Called with mu held.
func (o *outbox) expire(now time.Time, timeout time.Duration) {
	n := 0
	for o.confirmed.len() > 0 {
		e := o.confirmed.peek()
		if !e.back {
			if now.Sub(e.confirmedAt) < timeout {
				break
			}
			e.back = true
			delete(o.own, e.id)
			n++
		}
		o.confirmed.pop()
	}
	o.expired.Add(uint64(n))
}

// next returns the next message to send on the current channel, if the
// window of unconfirmed sends allows one.
func (o *outbox) next(window int) (*outMsg, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sent >= o.msgs.len() || o.sent >= window {
		return nil, false
	}
	m := o.msgs.at(o.sent)
	o.sent++
	return m, true
}

// confirm settles the oldest sent message: acked, it leaves the buffer;
// nacked, it goes to the back of the buffer to be sent again.
func (o *outbox) confirm(ack bool, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sent == 0 {
		return // a confirm of a channel already given up
	}
	m := o.msgs.pop()
	o.sent--
	if ack {
		if !m.own.back {
			m.own.confirmedAt = now
			o.confirmed.push(m.own)
		}
	} else {
		o.msgs.push(m)
	}
	o.signal()
}

// resend makes every sent, unconfirmed message go out again on the next
// channel, in order. It returns how many there were.
func (o *outbox) resend() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.sent
	o.sent = 0
	o.signal()
	return n
}

// dropLarger removes the messages whose body is larger than limit, sent or
// waiting, keeping the order of the rest, and stops waiting for them to
// come back. It returns their sizes.
func (o *outbox) dropLarger(limit int64) []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	var sizes []int
	n, sent := o.msgs.len(), o.sent
	for i := 0; i < n; i++ {
		m := o.msgs.pop()
		if int64(len(m.pub.Body)) <= limit {
			o.msgs.push(m)
			continue
		}
		sizes = append(sizes, len(m.pub.Body))
		if i < sent {
			o.sent--
		}
		m.own.back = true
		if o.own[m.own.id] == m.own {
			delete(o.own, m.own.id)
		}
	}
	if len(sizes) > 0 {
		o.signal()
	}
	return sizes
}

// returned records that own message id came back. It reports whether id was
// one this host was waiting for.
func (o *outbox) returned(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.own[id]
	if !ok {
		return false
	}
	delete(o.own, id)
	e.back = true
	for o.confirmed.len() > 0 && o.confirmed.peek().back {
		o.confirmed.pop()
	}
	if o.confirmed.len() > 4096 {
		// Something ahead never came back: stop waiting for it, so that
		// what came back behind it does not pile up.
		o.expire(time.Now(), o.timeout)
	}
	o.signal()
	return true
}

// waitEmpty waits until every message is confirmed and back, or ctx ends,
// and reports what is left: messages not confirmed, and own messages
// confirmed but not back. Own messages confirmed longer than timeout ago are
// no longer waited for.
func (o *outbox) waitEmpty(ctx context.Context, timeout time.Duration) (unconfirmed, unreturned int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.msgs.len() > 0 || len(o.own) > 0 {
		now := time.Now()
		o.expire(now, timeout)
		if o.msgs.len() == 0 && len(o.own) == 0 {
			break
		}
		if ctx.Err() != nil {
			break
		}
		until := now.Add(timeout)
		if o.confirmed.len() > 0 {
			if exp := o.confirmed.peek().confirmedAt.Add(timeout); exp.Before(until) {
				until = exp
			}
		}
		ch := o.waitCh()
		o.mu.Unlock()
		t := time.NewTimer(time.Until(until))
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		o.mu.Lock()
	}
	unconfirmed = o.msgs.len()
	unreturned = len(o.own)
	for i := 0; i < o.msgs.len(); i++ {
		if !o.msgs.at(i).own.back {
			unreturned--
		}
	}
	return unconfirmed, unreturned
}

// forget stops waiting for confirmed own messages (after a stop nobody
// waits) and rewinds the unconfirmed ones for the next start.
func (o *outbox) forget() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.confirmed.len() > 0 {
		e := o.confirmed.pop()
		if !e.back {
			e.back = true
			delete(o.own, e.id)
		}
	}
	o.sent = 0
}

// sizes returns the number of unconfirmed messages and of own messages not
// yet back.
func (o *outbox) sizes() (buffered, inTransit int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.msgs.len(), len(o.own)
}

// ring is a FIFO queue on a growable circular buffer, so that a long-lived
// queue does not pin the memory of everything that passed through it.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

func (r *ring[T]) len() int { return r.n }

func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		nb := make([]T, max(16, 2*len(r.buf)))
		for i := 0; i < r.n; i++ {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = v
	r.n++
}

func (r *ring[T]) peek() T { return r.buf[r.head] }

func (r *ring[T]) at(i int) T { return r.buf[(r.head+i)%len(r.buf)] }

func (r *ring[T]) pop() T {
	var zero T
	v := r.buf[r.head]
	r.buf[r.head] = zero
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	if r.n == 0 {
		r.head = 0
		if len(r.buf) > 1024 {
			r.buf = nil // give a burst's memory back
		}
	}
	return v
}
