package zmq

import (
	"log/slog"
	"maps"
	"sort"
	"sync"

	"github.com/threatbus/threatbus/plugins"
)

// Stats are the app's counters.
type Stats struct {
	// Accepted counts frames apps published that went on the bus.
	Accepted uint64 `json:"accepted"`
	// Rejected counts dropped inbound frames by cause (the cause* constants:
	// "malformed_json", "invalid_indicator", "topic", …).
	Rejected map[string]uint64 `json:"rejected"`
	// Expired counts subscriptions ended because heartbeats stopped.
	Expired uint64 `json:"expired"`
	// Subscriptions are the live subscriptions, by private topic.
	Subscriptions []SubscriptionStats `json:"subscriptions"`
}

// SubscriptionStats are the counters of one app's subscription.
type SubscriptionStats struct {
	// Topic is the private topic; Topics what the app subscribed to.
	Topic  string   `json:"topic"`
	Topics []string `json:"topics"`
	// Sent counts frames handed to zmq for the app.
	Sent uint64 `json:"sent"`
	// Held is the number of frames waiting for the app to connect or for
	// room in zmq's queue.
	Held int64 `json:"held"`
	// Discarded counts held frames thrown away when the subscription ended.
	Discarded uint64 `json:"discarded"`
	// SnapshotRequestsSkipped counts snapshot requests not queued because
	// the app held max_pending frames already.
	SnapshotRequestsSkipped uint64 `json:"snapshot_requests_skipped"`
	// EchoesSuppressed counts messages not sent back to their publisher.
	EchoesSuppressed uint64 `json:"echoes_suppressed"`
	// Bus are the bus subscription's counters: Dropped["overflow"] counts
	// what the app could not take in time (its outbox overflowed).
	Bus plugins.SubscriptionStats `json:"bus"`
}

// Dropped is the total of messages the app did not get.
func (s SubscriptionStats) Dropped() uint64 {
	n := s.Discarded + s.SnapshotRequestsSkipped
	for _, v := range s.Bus.Dropped {
		n += v
	}
	return n
}

// Stats returns the app's counters.
func (a *App) Stats() Stats {
	st := a.st
	if st == nil {
		return Stats{Rejected: map[string]uint64{}}
	}
	out := Stats{Accepted: st.accepted.Load(), Rejected: st.rejected.snapshot(), Expired: st.expired.Load()}
	for _, c := range st.list() {
		out.Subscriptions = append(out.Subscriptions, c.stats())
	}
	sort.Slice(out.Subscriptions, func(i, j int) bool { return out.Subscriptions[i].Topic < out.Subscriptions[j].Topic })
	return out
}

func (c *client) stats() SubscriptionStats {
	var bus plugins.SubscriptionStats
	if c.sub != nil { // nil: the bus ended the subscription before it was registered
		bus = c.sub.Stats()
	}
	return SubscriptionStats{
		Topic:                   c.p2p,
		Topics:                  c.topics,
		Sent:                    c.sent.Load(),
		Held:                    c.inflight.Load(),
		Discarded:               c.discarded.Load(),
		SnapshotRequestsSkipped: c.snapshotSkipped.Load(),
		EchoesSuppressed:        c.echoes.Load(),
		Bus:                     bus,
	}
}

func (s SubscriptionStats) attrs() []any {
	return []any{"topic", s.Topic, "topics", s.Topics, "sent", s.Sent, "held", s.Held,
		"dropped", s.Dropped(), "bus_delivered", s.Bus.Delivered, "bus_dropped", s.Bus.Dropped, "bus_queued", s.Bus.Queued,
		"discarded", s.Discarded, "snapshot_requests_skipped", s.SnapshotRequestsSkipped, "echoes_suppressed", s.EchoesSuppressed}
}

// logStats logs every subscription that dropped messages since the last
// report (all = every one that ever dropped, at stop).
func (s *state) logStats(log *slog.Logger, msg string, all bool) {
	for _, c := range s.list() {
		st := c.stats()
		d := st.Dropped()
		if d > c.reported || all && d > 0 {
			c.reported = d
			log.Warn(msg, st.attrs()...)
		}
	}
}

// logEnd logs the final counters of a subscription that ended.
func (s *state) logEnd(log *slog.Logger, c *client, msg string) {
	st := c.stats()
	if st.Dropped() > 0 {
		log.Warn(msg, st.attrs()...)
		return
	}
	log.Info(msg, st.attrs()...)
}

// tally counts rejected frames by cause and logs the first of each cause.
type tally struct {
	mu     sync.Mutex
	counts map[string]uint64
}

func newTally() *tally { return &tally{counts: map[string]uint64{}} }

func (t *tally) add(log *slog.Logger, r *rejection) {
	t.mu.Lock()
	t.counts[r.cause]++
	first := t.counts[r.cause] == 1
	t.mu.Unlock()
	if first {
		log.Warn("dropped a frame an app published", "cause", r.cause, "error", r.err,
			"note", "logged once per cause; further ones are only counted")
	}
}

func (t *tally) snapshot() map[string]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.counts)
}

// Report implements plugins.Reporter: Stats in the status, and as metrics.
// Per-subscription traffic is in the bus's own metrics, by app.
func (a *App) Report() plugins.Report {
	st := a.Stats()
	m := []plugins.Metric{
		{Name: "zmq_frames_accepted_total", Help: "Frames apps published that went on the bus.", Counter: true, Value: float64(st.Accepted)},
		{Name: "zmq_subscriptions_expired_total", Help: "Subscriptions ended because heartbeats stopped.", Counter: true, Value: float64(st.Expired)},
	}
	var held float64
	for _, s := range st.Subscriptions {
		held += float64(s.Held)
	}
	m = append(m, plugins.Metric{Name: "zmq_frames_held", Help: "Frames waiting for their app to connect or for room in zmq's queue.", Value: held})
	for cause, n := range st.Rejected {
		m = append(m, plugins.Metric{Name: "zmq_frames_rejected_total", Help: "Inbound frames dropped, by cause.", Counter: true, Labels: map[string]string{"cause": cause}, Value: float64(n)})
	}
	return plugins.Report{Details: st, Metrics: m}
}
