package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/threatbus/threatbus/messages"
)

// queue is one peer's bounded FIFO of envelopes waiting to be forwarded and
// acknowledged. The head stays in the queue until the peer acknowledges it.
type queue struct {
	mu     sync.Mutex
	items  []*messages.Envelope
	head   int
	max    int
	notify chan struct{} // one token: something was pushed
}

func newQueue(max int) *queue {
	return &queue{max: max, notify: make(chan struct{}, 1)}
}

// push appends env; false when the queue is full.
func (q *queue) push(env *messages.Envelope) bool {
	q.mu.Lock()
	if len(q.items)-q.head >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, env)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return true
}

// peek returns up to n envelopes from the head without removing them.
func (q *queue) peek(n int) []*messages.Envelope {
	q.mu.Lock()
	defer q.mu.Unlock()
	avail := len(q.items) - q.head
	if avail > n {
		avail = n
	}
	if avail == 0 {
		return nil
	}
	return append([]*messages.Envelope(nil), q.items[q.head:q.head+avail]...)
}

// pop removes n envelopes from the head.
func (q *queue) pop(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := q.head; i < q.head+n && i < len(q.items); i++ {
		q.items[i] = nil
	}
	q.head += n
	if q.head >= len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 4096 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
}

// len is the number of envelopes not yet acknowledged.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// clear empties the queue and returns how many envelopes it held.
func (q *queue) clear() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.items) - q.head
	q.items, q.head = nil, 0
	return n
}

// peer is another member this one forwards to: its queue, its counters and
// the goroutine that sends. A peer outlives a rejoin of this member (its id
// does not change when ours does), so what was queued for it survives.
type peer struct {
	id      string
	address string
	since   time.Time
	q       *queue
	// mem is the incarnation of this member the sender sends through; nil
	// while rejoining.
	mem     atomic.Pointer[member]
	memSet  chan struct{} // token: mem changed
	stop    chan struct{}
	stopped chan struct{}

	forwarded, acked, retried atomic.Uint64
	knowsUs                   atomic.Bool
	lastAck                   atomic.Int64 // unix nanos of the last knows_you
	lastErr                   atomic.Pointer[string]

	dropMu  sync.Mutex
	dropped map[string]uint64
}

func newPeer(id, address string, max int) *peer {
	return &peer{id: id, address: address, since: time.Now(), q: newQueue(max),
		memSet: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
		dropped: map[string]uint64{}}
}

func (p *peer) setMember(m *member) {
	p.mem.Store(m)
	select {
	case p.memSet <- struct{}{}:
	default:
	}
}

func (p *peer) drop(reason string, n uint64) {
	if n == 0 {
		return
	}
	p.dropMu.Lock()
	p.dropped[reason] += n
	p.dropMu.Unlock()
}

func (p *peer) drops() map[string]uint64 {
	p.dropMu.Lock()
	defer p.dropMu.Unlock()
	out := make(map[string]uint64, len(p.dropped))
	for k, v := range p.dropped {
		out[k] = v
	}
	return out
}

// send forwards the queue to the peer, one batch in flight at a time, so
// that the peer receives each publisher's messages in order. A batch is
// retried until acknowledged; the receiving router drops the duplicates a
// retry may cause.
func (r *run) send(p *peer) {
	defer close(p.stopped)
	backoff := func(attempt int) bool {
		d := time.Duration(attempt) * 50 * time.Millisecond
		if d > time.Second {
			d = time.Second
		}
		select {
		case <-p.stop:
			return false
		case <-time.After(d):
			return true
		}
	}
	for {
		m := p.mem.Load()
		if m == nil {
			select {
			case <-p.stop:
				return
			case <-p.memSet:
				continue
			}
		}
		batch := p.q.peek(r.b.Batch)
		if batch == nil {
			select {
			case <-p.stop:
				return
			case <-p.q.notify:
			case <-p.memSet:
			}
			continue
		}
		msg := &Forward{Version: WireVersion_WIRE_VERSION_1, From: m.id, Batch: m.batches.Add(1), Envelopes: batch}
		p.forwarded.Add(uint64(len(batch)))
		for attempt := 1; ; attempt++ {
			ack, err := m.forward(p, msg)
			if err == nil {
				p.knowsUs.Store(ack.KnowsYou)
				if ack.KnowsYou {
					p.lastAck.Store(time.Now().UnixNano())
				}
				if ack.BlockedYou {
					r.evicted(m, "peer "+p.id+" has blocked this member")
				}
				if ack.Error != "" {
					p.drop("refused", uint64(len(batch)))
					r.b.drop("refused", uint64(len(batch)))
					r.log().Warn("peer refused a forward", "peer", p.id, "address", p.address, "error", ack.Error, "messages", len(batch))
				} else {
					p.acked.Add(uint64(len(batch)))
				}
				p.q.pop(len(batch))
				break
			}
			s := err.Error()
			p.lastErr.Store(&s)
			select {
			case <-p.stop:
				return
			default:
			}
			if cur := p.mem.Load(); cur != m {
				// This member rejoined under a new id: send again from the new
				// incarnation, with a new batch number.
				break
			}
			p.retried.Add(uint64(len(batch)))
			if !backoff(attempt) {
				return
			}
		}
	}
}
