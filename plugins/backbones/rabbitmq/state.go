package rabbitmq

import (
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/threatbus/threatbus/plugins"
)

// linkState is the state of one connection (the publisher's or the
// consumer's), replaced as a whole on every change.
type linkState struct {
	up      bool
	blocked bool   // the broker blocked publishing (connection.blocked)
	reason  string // why it is blocked
	err     error  // why it is down
	attempt int    // failed attempts in a row
	// retry is when the next attempt is due; zero before the first.
	retry time.Time
}

func (s *linkState) ready(link string) error {
	switch {
	case s.up && s.blocked:
		return fmt.Errorf("%s: connected, but RabbitMQ blocks publishing (%s)", link, s.reason)
	case s.up:
		return nil
	case s.retry.IsZero():
		return fmt.Errorf("%s: %v", link, s.err)
	}
	wait := time.Until(s.retry).Round(time.Millisecond)
	if wait < 0 {
		wait = 0
	}
	if s.attempt == 0 {
		return fmt.Errorf("%s: disconnected: %v (reconnecting in %s)", link, s.err, wait)
	}
	return fmt.Errorf("%s: disconnected: %v (%d failed attempts, next in %s)", link, s.err, s.attempt, wait)
}

// counters are the backbone's statistics; see Stats.
type counters struct {
	published, refused, slow              atomic.Uint64
	sent, resent, confirmed, nacked       atomic.Uint64
	delivered, foreign, redelivered       atomic.Uint64
	connects, disconnects, failedAttempts atomic.Uint64
	loopbackTimeouts                      atomic.Uint64
	lastRejectMu                          sync.Mutex // guards rejectedBy and droppedBy
	rejectedBy                            map[string]uint64
	droppedBy                             map[string]uint64
}

// causeTooLarge is the cause of a message dropped because RabbitMQ refused
// one of its size (see dropTooLarge).
const causeTooLarge = "too_large"

// Stats are the backbone's counters since it was created.
type Stats struct {
	// Published counts messages Publish accepted; Refused those it refused
	// (buffer full, stopped); Slow the publishes that returned at
	// publish_timeout before max_in_flight was reached.
	Published uint64 `json:"published"`
	Refused   uint64 `json:"refused"`
	Slow      uint64 `json:"slow"`
	// Sent counts basic.publish frames, Resent those of them that repeat an
	// unconfirmed message after a reconnect or a nack.
	Sent   uint64 `json:"sent"`
	Resent uint64 `json:"resent"`
	// Confirmed and Nacked count publisher confirms.
	Confirmed uint64 `json:"confirmed"`
	Nacked    uint64 `json:"nacked"`
	// Delivered counts deliveries handed to the bus; Foreign those without
	// a message-id (from the original Threat Bus), which get a fresh id;
	// Redelivered those RabbitMQ flagged as redelivered (possible
	// duplicates, which the router removes).
	Delivered   uint64 `json:"delivered"`
	Foreign     uint64 `json:"foreign"`
	Redelivered uint64 `json:"redelivered"`
	// Rejected counts deliveries rejected without requeue, by cause.
	Rejected map[string]uint64 `json:"rejected"`
	// Dropped counts messages Publish accepted and the backbone then gave
	// up on, by cause: too_large, above RabbitMQ's max_message_size (it
	// refused one of them).
	Dropped map[string]uint64 `json:"dropped"`
	// Connects, Disconnects and FailedAttempts count connection events of
	// both links.
	Connects       uint64 `json:"connects"`
	Disconnects    uint64 `json:"disconnects"`
	FailedAttempts uint64 `json:"failed_attempts"`
	// LoopbackTimeouts counts own messages that were confirmed but did not
	// come back within publish_timeout (dropped by max_items, a purge, or a
	// very slow consumer) and are no longer waited for.
	LoopbackTimeouts uint64 `json:"loopback_timeouts"`
	// Buffered is the number of messages not yet confirmed; InTransit the
	// number of own messages not yet back.
	Buffered  int `json:"buffered"`
	InTransit int `json:"in_transit"`
}

// Stats returns the backbone's counters.
func (b *Backbone) Stats() Stats {
	c := &b.stats
	st := Stats{
		Published: c.published.Load(), Refused: c.refused.Load(), Slow: c.slow.Load(),
		Sent: c.sent.Load(), Resent: c.resent.Load(),
		Confirmed: c.confirmed.Load(), Nacked: c.nacked.Load(),
		Delivered: c.delivered.Load(), Foreign: c.foreign.Load(), Redelivered: c.redelivered.Load(),
		Connects: c.connects.Load(), Disconnects: c.disconnects.Load(), FailedAttempts: c.failedAttempts.Load(),
		LoopbackTimeouts: c.loopbackTimeouts.Load(),
		Rejected:         map[string]uint64{},
		Dropped:          map[string]uint64{},
	}
	c.lastRejectMu.Lock()
	for k, v := range c.rejectedBy {
		st.Rejected[k] = v
	}
	for k, v := range c.droppedBy {
		st.Dropped[k] = v
	}
	c.lastRejectMu.Unlock()
	if b.out != nil {
		st.Buffered, st.InTransit = b.out.sizes()
	}
	return st
}

func (c *counters) reject(cause string) {
	c.lastRejectMu.Lock()
	if c.rejectedBy == nil {
		c.rejectedBy = map[string]uint64{}
	}
	c.rejectedBy[cause]++
	c.lastRejectMu.Unlock()
}

func (c *counters) drop(cause string, n uint64) {
	c.lastRejectMu.Lock()
	if c.droppedBy == nil {
		c.droppedBy = map[string]uint64{}
	}
	c.droppedBy[cause] += n
	c.lastRejectMu.Unlock()
}

// onceLog remembers which causes were logged, so that a stream of bad
// messages logs one line per cause instead of one per message.
type onceLog struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (o *onceLog) first(cause string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen[cause] {
		return false
	}
	if o.seen == nil {
		o.seen = map[string]bool{}
	}
	o.seen[cause] = true
	return true
}

// idGen makes envelope ids for messages that arrive without a message-id
// (from the original Threat Bus): a random prefix and a counter, like the
// core's ids, so they cannot collide with another bus's.
type idGen struct {
	once   sync.Once
	prefix string
	n      atomic.Uint64
}

func (g *idGen) init() {
	g.once.Do(func() {
		var b [8]byte
		_, _ = cryptoRead(b[:])
		g.prefix = "amqp-" + hex.EncodeToString(b[:]) + "-"
	})
}

func (g *idGen) next() string {
	g.init()
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}

var cryptoRead = crand.Read

// backoff returns the delay before attempt n (1, 2, …): min·2^(n-1) capped
// at max, then "equal jitter": a random point in the upper half, so that
// buses restarted together do not reconnect in lockstep.
func backoff(n int, min, max time.Duration, rnd func() float64) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + time.Duration(rnd()*float64(d-half))
}

var jitter = mrand.Float64

// Report implements plugins.Reporter: the counters of Stats, in the status
// and as metrics.
func (b *Backbone) Report() plugins.Report {
	st := b.Stats()
	counter := func(name, help string, v uint64) plugins.Metric {
		return plugins.Metric{Name: "rabbitmq_" + name, Help: help, Counter: true, Value: float64(v)}
	}
	m := []plugins.Metric{
		counter("published_total", "Messages Publish accepted.", st.Published),
		counter("refused_total", "Messages Publish refused (buffer full, stopped).", st.Refused),
		counter("sent_total", "basic.publish frames sent, resends included.", st.Sent),
		counter("resent_total", "Sends that repeated an unconfirmed message.", st.Resent),
		counter("confirmed_total", "Publisher confirms (acks).", st.Confirmed),
		counter("nacked_total", "Publisher nacks.", st.Nacked),
		counter("delivered_total", "Deliveries handed to the bus.", st.Delivered),
		counter("redelivered_total", "Deliveries RabbitMQ flagged as redelivered.", st.Redelivered),
		counter("foreign_total", "Deliveries without a message-id (from the original Threat Bus).", st.Foreign),
		counter("connects_total", "Connections opened, both links.", st.Connects),
		counter("disconnects_total", "Connections lost, both links.", st.Disconnects),
		counter("failed_connection_attempts_total", "Connection attempts that failed.", st.FailedAttempts),
		counter("loopback_timeouts_total", "Own messages confirmed but not back within publish_timeout.", st.LoopbackTimeouts),
		{Name: "rabbitmq_buffered_messages", Help: "Messages RabbitMQ has not confirmed yet.", Value: float64(st.Buffered)},
		{Name: "rabbitmq_in_transit_messages", Help: "Own messages confirmed and not yet back from this host's queue.", Value: float64(st.InTransit)},
	}
	for cause, n := range st.Rejected {
		m = append(m, plugins.Metric{Name: "rabbitmq_rejected_total", Help: "Deliveries rejected without requeue, by cause.", Counter: true, Labels: map[string]string{"cause": cause}, Value: float64(n)})
	}
	for cause, n := range st.Dropped {
		m = append(m, plugins.Metric{Name: "rabbitmq_dropped_total", Help: "Accepted messages given up on, by cause (too_large: above RabbitMQ's max_message_size).", Counter: true, Labels: map[string]string{"cause": cause}, Value: float64(n)})
	}
	return plugins.Report{Details: st, Metrics: m}
}
