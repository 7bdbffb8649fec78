package cluster

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/threatbus/threatbus/messages"
)

// Byte limits of the wire. protoactor's endpoint writer packs the messages
// queued for one member into one gRPC message, and the receiving member's
// gRPC server refuses a message over its receive limit as a whole: the
// sender saw only an ack timeout and sent the same batch again, forever.
const (
	// maxForwardBytes bounds the envelopes of one Forward, as encoded. It is
	// below gRPC's default receive limit (4 MiB), so that a member of an
	// earlier release, which kept that limit, still takes a Forward sent on
	// its own. An envelope larger than this is never forwarded (dropped,
	// "too_large").
	maxForwardBytes = 3 << 20
	// maxRecvBytes is this member's gRPC receive limit: room for a full
	// Forward and whatever the sender's endpoint writer packs with it (acks,
	// pings, copies of the Forward sent again while the stream was stalled).
	maxRecvBytes = 16 << 20
)

// forwardSize is what env adds to a Forward on the wire: its encoding, its
// length and the field's tag (one byte: field 4).
func forwardSize(env *messages.Envelope) int {
	return 1 + protowire.SizeBytes(proto.Size(env))
}

// dropLogEvery spaces the lines that report a peer's overflow and
// too_large drops: a full queue drops every publish, and a line each would
// flood the log.
const dropLogEvery = 10 * time.Second

// queue is one peer's bounded FIFO of envelopes waiting to be forwarded and
// acknowledged. The head stays in the queue until the peer acknowledges it.
type queue struct {
	mu     sync.Mutex
	items  []queued
	head   int
	max    int
	notify chan struct{} // one token: something was pushed
}

// queued is an envelope in a queue, with its forwardSize.
type queued struct {
	env  *messages.Envelope
	size int
}

func newQueue(max int) *queue {
	return &queue{max: max, notify: make(chan struct{}, 1)}
}

// push appends env, whose forwardSize is size; false when the queue is full.
func (q *queue) push(env *messages.Envelope, size int) bool {
	q.mu.Lock()
	if len(q.items)-q.head >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, queued{env: env, size: size})
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return true
}

// peek returns envelopes from the head without removing them: up to n, of
// at most maxBytes together, but the head always (Publish queues no
// envelope larger than maxForwardBytes).
func (q *queue) peek(n, maxBytes int) []*messages.Envelope {
	q.mu.Lock()
	defer q.mu.Unlock()
	avail := min(len(q.items)-q.head, n)
	if avail == 0 {
		return nil
	}
	out := make([]*messages.Envelope, 0, avail)
	total := 0
	for _, it := range q.items[q.head : q.head+avail] {
		if total += it.size; total > maxBytes && len(out) > 0 {
			break
		}
		out = append(out, it.env)
	}
	return out
}

// pop removes n envelopes from the head.
func (q *queue) pop(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := q.head; i < q.head+n && i < len(q.items); i++ {
		q.items[i] = queued{}
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
	// unlogged is what logDrop counted since its last line, by reason;
	// logTimer, when set, logs it at the end of the interval.
	unlogged map[string]uint64
	lastLog  time.Time
	logTimer *time.Timer
}

func newPeer(id, address string, max int) *peer {
	return &peer{id: id, address: address, since: time.Now(), q: newQueue(max),
		memSet: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
		dropped: map[string]uint64{}, unlogged: map[string]uint64{}}
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

// logDrop counts n forwards dropped for reason (overflow, too_large) and
// logs them at WARN: at once when this peer's last such line is older than
// dropLogEvery, else summed into one line when that interval ends.
func (p *peer) logDrop(log *slog.Logger, reason string, n uint64) {
	p.dropMu.Lock()
	defer p.dropMu.Unlock()
	p.dropped[reason] += n
	p.unlogged[reason] += n
	if p.logTimer != nil {
		return // a line is due
	}
	if wait := dropLogEvery - time.Since(p.lastLog); wait > 0 {
		p.logTimer = time.AfterFunc(wait, func() {
			p.dropMu.Lock()
			defer p.dropMu.Unlock()
			p.logTimer = nil
			p.logDropsLocked(log)
		})
		return
	}
	p.logDropsLocked(log)
}

// flushDrops logs at once what logDrop has not logged yet: the peer left, or
// this member stops.
func (p *peer) flushDrops(log *slog.Logger) {
	p.dropMu.Lock()
	defer p.dropMu.Unlock()
	if p.logTimer != nil {
		p.logTimer.Stop()
		p.logTimer = nil
	}
	p.logDropsLocked(log)
}

func (p *peer) logDropsLocked(log *slog.Logger) {
	if len(p.unlogged) == 0 {
		return
	}
	reasons := make([]string, 0, len(p.unlogged))
	for reason := range p.unlogged {
		reasons = append(reasons, reason)
	}
	slices.Sort(reasons)
	for _, reason := range reasons {
		log.Warn("forwards to a peer dropped", "peer", p.id, "address", p.address, "reason", reason,
			"dropped", p.unlogged[reason], "total", p.dropped[reason], "note", dropNotes[reason])
	}
	clear(p.unlogged)
	p.lastLog = time.Now()
}

// dropNotes say, in the log, what a logDrop reason means.
var dropNotes = map[string]string{
	"overflow":  "the peer's queue is full (buffer): it does not acknowledge as fast as this member publishes; dropped counts those since the last such line",
	"too_large": "envelopes over 3 MiB are delivered on this member only; dropped counts those since the last such line",
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
		batch := p.q.peek(r.b.Batch, maxForwardBytes)
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
