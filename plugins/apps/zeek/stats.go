package zeek

import (
	"log/slog"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/threatbus/threatbus/plugins"
)

// Reasons an indicator delivered to a Zeek subscription is not sent, as
// counted in Stats.NotApplicable.
const (
	naNotIndicator = "not_an_indicator"   // a sighting (the Zeek subscribed to "stix2/" or "")
	naInvalid      = "invalid_indicator"  // does not decode as a STIX indicator
	naPatternType  = "not_a_stix_pattern" // pattern_type other than stix
	naNotPoint     = "not_a_point_ioc"    // anything but one "=" comparison
	naUnsupported  = "unsupported_type"   // an object path Zeek has no intel type for
	naValue        = "invalid_value"      // empty, not an address, or unsendable
)

// Causes of events from Zeek that were not acted on, as counted in
// EndpointStats.Rejected.
const (
	rejMalformed      = "malformed"           // not a Broker JSON message
	rejNotEvent       = "not_an_event"        // a data message that is not an event
	rejBadSubscribe   = "bad_subscribe"       // subscribe with wrong arguments
	rejSubscribeError = "subscribe_failed"    // the bus refused the subscription
	rejBadUnsubscribe = "bad_unsubscribe"     // unsubscribe with wrong arguments
	rejUnknownTopic   = "unsubscribe_unknown" // unsubscribe of a topic this Zeek does not have
	rejBadSighting    = "bad_sighting"        // sighting with wrong arguments
	rejInvalidSight   = "invalid_sighting"    // no valid STIX Sighting can be made of it
	rejPublish        = "publish_failed"      // the bus refused the sighting
	rejPanic          = "handler_panic"       // a bug; logged with its stack
	rejBinary         = "binary_message"      // Zeek sends text only
)

// Stats are the app's counters.
type Stats struct {
	// NotApplicable counts indicators not sent to a Zeek, by reason (the
	// na* constants: "not_a_point_ioc", "unsupported_type", …), once per
	// subscription that received them.
	NotApplicable map[string]uint64 `json:"not_applicable"`
	Endpoints     []EndpointStats   `json:"endpoints"`
}

// EndpointStats are the counters of one Zeek.
type EndpointStats struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
	// LastError is why the endpoint is not connected, or why it last lost
	// its connection.
	LastError string `json:"last_error"`
	// Zeek's endpoint id and version from the last ack.
	ZeekEndpoint string `json:"zeek_endpoint"`
	ZeekVersion  string `json:"zeek_version"`
	Connects     uint64 `json:"connects"`
	Disconnects  uint64 `json:"disconnects"`
	// Subscribed and Unsubscribed count subscriptions made and ended on
	// Zeek's request; Resubscribed counts subscribes answered with the
	// subscription the connection already had for that topic.
	Subscribed   uint64 `json:"subscribed"`
	Unsubscribed uint64 `json:"unsubscribed"`
	Resubscribed uint64 `json:"resubscribed"`
	// IntelSent counts Tenzir::intel events written to Zeek.
	IntelSent uint64 `json:"intel_sent"`
	// Sightings counts sightings put on the bus.
	Sightings uint64 `json:"sightings"`
	// ServerErrors counts Zeek's error messages by code.
	ServerErrors map[string]uint64 `json:"server_errors"`
	// Rejected counts what Zeek sent that was not acted on, by cause (the
	// rej* constants).
	Rejected map[string]uint64 `json:"rejected"`
	// Ignored counts events of other names (the bus's own events echoed,
	// other modules'), by name.
	Ignored map[string]uint64 `json:"ignored"`
	// Subscriptions are the live subscriptions of the current connection.
	Subscriptions []SubscriptionStats `json:"subscriptions"`
}

// SubscriptionStats describe one Zeek subscription.
type SubscriptionStats struct {
	Topic      string        `json:"topic"`
	P2P        string        `json:"p2p"`
	Snapshot   time.Duration `json:"snapshot"`
	SnapshotID string        `json:"snapshot_id"`
	// IntelSent counts intel events sent for this subscription.
	IntelSent uint64 `json:"intel_sent"`
	// Bus are the bus subscription's counters: Dropped["overflow"] counts
	// what this Zeek could not take in time.
	Bus plugins.SubscriptionStats `json:"bus"`
}

// state is what outlives one Run: the endpoints and the counters.
type state struct {
	endpoints     []*endpoint
	running       chan struct{} // one Run at a time
	notApplicable *tally

	lastLogged Stats
}

func newState(a *App, urls []string) *state {
	st := &state{running: make(chan struct{}, 1), notApplicable: newTally()}
	for _, u := range urls {
		st.endpoints = append(st.endpoints, newEndpoint(a, st, u))
	}
	return st
}

// Stats returns the app's counters.
func (a *App) Stats() Stats {
	st := a.st
	if st == nil {
		return Stats{NotApplicable: map[string]uint64{}}
	}
	out := Stats{NotApplicable: st.notApplicable.snapshot()}
	for _, e := range st.endpoints {
		out.Endpoints = append(out.Endpoints, e.stats())
	}
	return out
}

// logStats logs the counters when they changed since the last time (or
// always, when final).
func (st *state) logStats(log *slog.Logger, final bool) {
	cur := Stats{NotApplicable: st.notApplicable.snapshot()}
	for _, e := range st.endpoints {
		cur.Endpoints = append(cur.Endpoints, e.stats())
	}
	if !final && sameCounters(cur, st.lastLogged) {
		return
	}
	st.lastLogged = cur
	msg := "zeek app counters"
	if final {
		msg = "zeek app stopped"
	}
	attrs := []any{"not_applicable", cur.NotApplicable}
	for _, e := range cur.Endpoints {
		attrs = append(attrs, slog.Group(e.URL,
			"connected", e.Connected, "last_error", e.LastError, "zeek_endpoint", e.ZeekEndpoint,
			"zeek_version", e.ZeekVersion, "connects", e.Connects, "disconnects", e.Disconnects,
			"subscriptions", len(e.Subscriptions), "subscribed", e.Subscribed, "unsubscribed", e.Unsubscribed,
			"resubscribed", e.Resubscribed, "intel_sent", e.IntelSent, "sightings", e.Sightings,
			"dropped", e.dropped(), "server_errors", e.ServerErrors, "rejected", e.Rejected, "ignored", e.Ignored))
	}
	log.Info(msg, attrs...)
}

func sameCounters(a, b Stats) bool {
	if !maps.Equal(a.NotApplicable, b.NotApplicable) || len(a.Endpoints) != len(b.Endpoints) {
		return false
	}
	for i := range a.Endpoints {
		x, y := a.Endpoints[i], b.Endpoints[i]
		if x.Connected != y.Connected || x.LastError != y.LastError || x.ZeekEndpoint != y.ZeekEndpoint ||
			x.ZeekVersion != y.ZeekVersion || x.Connects != y.Connects || x.Disconnects != y.Disconnects ||
			len(x.Subscriptions) != len(y.Subscriptions) || x.Subscribed != y.Subscribed ||
			x.Unsubscribed != y.Unsubscribed || x.Resubscribed != y.Resubscribed ||
			x.IntelSent != y.IntelSent || x.Sightings != y.Sightings || x.dropped() != y.dropped() ||
			!maps.Equal(x.ServerErrors, y.ServerErrors) || !maps.Equal(x.Rejected, y.Rejected) ||
			!maps.Equal(x.Ignored, y.Ignored) {
			return false
		}
	}
	return true
}

// dropped is what the endpoint's subscriptions dropped, for every reason.
func (e EndpointStats) dropped() uint64 {
	var n uint64
	for _, s := range e.Subscriptions {
		for _, d := range s.Bus.Dropped {
			n += d
		}
	}
	return n
}

// tally counts by cause.
type tally struct {
	mu sync.Mutex
	m  map[string]uint64
}

func newTally() *tally { return &tally{m: map[string]uint64{}} }

func (t *tally) add(cause string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[cause]++
	return t.m[cause]
}

func (t *tally) snapshot() map[string]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.m)
}

// counters of one endpoint, atomics so that sinks and the reader update
// them without a lock.
type counters struct {
	connects, disconnects                  atomic.Uint64
	subscribed, unsubscribed, resubscribed atomic.Uint64
	intelSent, sightings                   atomic.Uint64
	serverErrors, rejected, ignored        *tally
}

func (e *endpoint) stats() EndpointStats {
	e.mu.Lock()
	s := EndpointStats{
		URL: e.url, Connected: e.connected.Load(), LastError: e.lastErr,
		ZeekEndpoint: e.zeekEndpoint, ZeekVersion: e.zeekVersion,
	}
	sess := e.sess
	e.mu.Unlock()
	c := &e.c
	s.Connects, s.Disconnects = c.connects.Load(), c.disconnects.Load()
	s.Subscribed, s.Unsubscribed, s.Resubscribed = c.subscribed.Load(), c.unsubscribed.Load(), c.resubscribed.Load()
	s.IntelSent, s.Sightings = c.intelSent.Load(), c.sightings.Load()
	s.ServerErrors, s.Rejected, s.Ignored = c.serverErrors.snapshot(), c.rejected.snapshot(), c.ignored.snapshot()
	if sess != nil {
		s.Subscriptions = sess.subscriptionStats()
	}
	sort.Slice(s.Subscriptions, func(i, j int) bool { return s.Subscriptions[i].P2P < s.Subscriptions[j].P2P })
	return s
}

// Report implements plugins.Reporter: Stats in the status, and per-endpoint
// metrics.
func (a *App) Report() plugins.Report {
	st := a.Stats()
	var m []plugins.Metric
	add := func(name, help string, counter bool, v uint64, labels map[string]string) {
		m = append(m, plugins.Metric{Name: "zeek_" + name, Help: help, Counter: counter, Labels: labels, Value: float64(v)})
	}
	for _, e := range st.Endpoints {
		ep := map[string]string{"endpoint": e.URL}
		var up uint64
		if e.Connected {
			up = 1
		}
		add("connected", "1 when the WebSocket to this Zeek is up and acknowledged.", false, up, ep)
		add("connects_total", "Connections to this Zeek.", true, e.Connects, ep)
		add("disconnects_total", "Connections to this Zeek lost.", true, e.Disconnects, ep)
		add("subscriptions", "Live subscriptions of this Zeek.", false, uint64(len(e.Subscriptions)), ep)
		add("intel_sent_total", "Tenzir::intel events written to this Zeek.", true, e.IntelSent, ep)
		add("sightings_total", "Sightings from this Zeek put on the bus.", true, e.Sightings, ep)
		for code, n := range e.ServerErrors {
			add("server_errors_total", "Error messages from this Zeek, by code.", true, n, map[string]string{"endpoint": e.URL, "code": code})
		}
		for cause, n := range e.Rejected {
			add("rejected_total", "What this Zeek sent that was not acted on, by cause.", true, n, map[string]string{"endpoint": e.URL, "cause": cause})
		}
	}
	for reason, n := range st.NotApplicable {
		add("indicators_not_applicable_total", "Indicators not sent to Zeek, by reason.", true, n, map[string]string{"reason": reason})
	}
	return plugins.Report{Details: st, Metrics: m}
}
