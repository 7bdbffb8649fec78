package actors

import (
	"sync"

	"github.com/threatbus/threatbus/messages"
)

// ringQueue is a subscriber's bounded outbox: a FIFO that grows on demand up
// to max and then drops its oldest entry for each new one. A buffered
// channel of the same capacity would allocate (and make the GC scan) the
// whole capacity for every subscriber up front, idle or not.
//
// One producer (the subscriber actor) and one consumer (its writer
// goroutine) share it.
type ringQueue struct {
	mu     sync.Mutex
	buf    []outItem
	head   int // index of the oldest entry
	n      int
	max    int
	closed bool
	wake   chan struct{} // capacity 1: "something changed"
}

func newRingQueue(max int) *ringQueue {
	return &ringQueue{max: max, wake: make(chan struct{}, 1)}
}

// push appends it. When the queue is full, the oldest entry is removed and
// returned (evicted is true) so the caller can account for it.
func (q *ringQueue) push(it outItem) (old outItem, evicted bool) {
	q.mu.Lock()
	old, evicted = q.pushLocked(it)
	q.mu.Unlock()
	q.signal()
	return old, evicted
}

// pushEnvelopes appends envs under one lock and with one wake-up, and
// calls evict (after unlocking) for each entry that made room.
func (q *ringQueue) pushEnvelopes(envs []*messages.Envelope, evict func(outItem)) {
	var evicted []outItem
	q.mu.Lock()
	for _, env := range envs {
		if old, ok := q.pushLocked(outItem{env: env}); ok {
			evicted = append(evicted, old)
		}
	}
	q.mu.Unlock()
	q.signal()
	for _, it := range evicted {
		evict(it)
	}
}

func (q *ringQueue) pushLocked(it outItem) (old outItem, evicted bool) {
	if q.n == q.max {
		old, evicted = q.buf[q.head], true
		q.buf[q.head] = outItem{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = it
	q.n++
	return old, evicted
}

func (q *ringQueue) grow() {
	size := 2 * len(q.buf)
	if size < 16 {
		size = 16
	}
	if size > q.max {
		size = q.max
	}
	buf := make([]outItem, size)
	for i := 0; i < q.n; i++ {
		buf[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = buf, 0
}

// popN moves up to max of the oldest entries to dst and returns it. When
// none was there, closed says whether more can ever come.
func (q *ringQueue) popN(dst []outItem, max int) (out []outItem, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		// Shrink an idle queue back to nothing: a burst should not pin its
		// memory for the life of the subscription.
		if len(q.buf) > 1024 {
			q.buf, q.head = nil, 0
		}
		return dst, q.closed
	}
	for ; max > 0 && q.n > 0; max-- {
		dst = append(dst, q.buf[q.head])
		q.buf[q.head] = outItem{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	return dst, false
}

// close marks the end: popN drains what is left, then reports closed.
func (q *ringQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *ringQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

func (q *ringQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
