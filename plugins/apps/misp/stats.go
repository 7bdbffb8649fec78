package misp

import (
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins"
)

// Stats are the app's counters.
type Stats struct {
	// Intake is "zmq" or "kafka"; Endpoint what it connects to.
	Intake   string `json:"intake"`
	Endpoint string `json:"endpoint"`
	// Connected: the intake is connected (ZeroMQ handshake done, Kafka
	// brokers answering).
	Connected bool `json:"connected"`
	// LastHeard is when MISP last sent anything (an attribute, a heartbeat,
	// a Kafka record); zero if never.
	LastHeard time.Time `json:"last_heard"`
	// Heartbeats counts misp_json_self messages.
	Heartbeats uint64 `json:"heartbeats"`
	// Received counts attribute messages read from the intake.
	Received uint64 `json:"received"`
	// Published counts indicators put on the bus: "add", "edit", "remove".
	Published map[string]uint64 `json:"published"`
	// Skipped counts attribute messages that did not become indicators, by
	// cause ("to_ids_false", "filtered", "unmappable_type", …).
	Skipped map[string]uint64 `json:"skipped"`
	// Sightings are the write-back counters.
	Sightings SightingStats `json:"sightings"`
	// Snapshots are the snapshot counters.
	Snapshots SnapshotStats `json:"snapshots"`
}

// SightingStats count the sightings written back to MISP.
type SightingStats struct {
	// Queued is the number waiting to be sent.
	Queued int `json:"queued"`
	// Sent counts sightings MISP accepted.
	Sent uint64 `json:"sent"`
	// Rejected counts sightings MISP refused (4xx, or a reply with a
	// message and no Sighting); they are not retried.
	Rejected uint64 `json:"rejected"`
	// Dropped counts sightings thrown away because the queue was full.
	Dropped uint64 `json:"dropped"`
	// Retries counts attempts that failed transiently and were repeated.
	Retries uint64 `json:"retries"`
	// Ignored counts sightings not of an indicator; Invalid sightings that
	// did not decode.
	Ignored uint64 `json:"ignored"`
	Invalid uint64 `json:"invalid"`
}

// SnapshotStats count snapshot answers.
type SnapshotStats struct {
	Requests   uint64 // indicator snapshot requests served
	Indicators uint64 // indicators replied
	Failed     uint64 // searches that failed
	// Skipped counts attributes found that did not become indicators.
	Skipped map[string]uint64 `json:"skipped"`
}

// Stats returns the app's counters.
func (a *App) Stats() Stats {
	st := a.st
	if st == nil {
		return Stats{Published: map[string]uint64{}, Skipped: map[string]uint64{}, Snapshots: SnapshotStats{Skipped: map[string]uint64{}}}
	}
	c := st.counts
	connected, lastHeard := st.live.state()
	return Stats{
		Intake:     st.intake,
		Endpoint:   st.endpoint,
		Connected:  connected,
		LastHeard:  lastHeard,
		Heartbeats: c.heartbeats.Load(),
		Received:   c.received.Load(),
		Published: map[string]uint64{
			"add":    c.published[0].Load(),
			"edit":   c.published[1].Load(),
			"remove": c.published[2].Load(),
		},
		Skipped: c.skipped.snapshot(),
		Sightings: SightingStats{
			Queued:   st.queue.len(),
			Sent:     c.sightSent.Load(),
			Rejected: c.sightRejected.Load(),
			Dropped:  c.sightDropped.Load(),
			Retries:  c.sightRetries.Load(),
			Ignored:  c.sightIgnored.Load(),
			Invalid:  c.sightInvalid.Load(),
		},
		Snapshots: SnapshotStats{
			Requests:   c.snapRequests.Load(),
			Indicators: c.snapIndicators.Load(),
			Failed:     c.snapFailed.Load(),
			Skipped:    c.snapSkipped.snapshot(),
		},
	}
}

type counters struct {
	received, heartbeats atomic.Uint64
	published            [3]atomic.Uint64 // add, edit, remove
	skipped              *tally

	sightSent, sightRejected, sightDropped, sightRetries, sightIgnored, sightInvalid atomic.Uint64

	snapRequests, snapIndicators, snapFailed atomic.Uint64
	snapSkipped                              *tally
}

func newCounters() *counters {
	return &counters{skipped: newTally(), snapSkipped: newTally()}
}

func (c *counters) publishedOne(u stix.Update) {
	switch u {
	case stix.UpdateEdit:
		c.published[1].Add(1)
	case stix.UpdateRemove:
		c.published[2].Add(1)
	default:
		c.published[0].Add(1)
	}
}

// tally counts by cause and says when a cause is seen for the first time,
// so that it is logged once and only counted afterwards.
type tally struct {
	mu     sync.Mutex
	counts map[string]uint64
}

func newTally() *tally { return &tally{counts: map[string]uint64{}} }

func (t *tally) add(cause string) (first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts[cause]++
	return t.counts[cause] == 1
}

func (t *tally) snapshot() map[string]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.counts)
}

// liveness is the intake's connection state and when MISP was last heard
// from, for Ready, Stats and the transition logs.
type liveness struct {
	intake, endpoint string

	mu        sync.Mutex
	running   bool
	connected bool
	since     time.Time // start of the current connection state
	problem   string    // why the connection is refused, if it is
	problemAt time.Time
	lastHeard time.Time
	silent    bool // reported silent; reset when MISP speaks
}

func newLiveness(intake, endpoint string) *liveness {
	return &liveness{intake: intake, endpoint: endpoint}
}

func (l *liveness) started(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running, l.connected, l.since, l.problem, l.silent = true, false, now, "", false
}

func (l *liveness) stopped() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running, l.connected = false, false
}

// setConnected records a connection state change and reports whether it
// was one.
func (l *liveness) setConnected(up bool, problem string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := up != l.connected || problem != l.problem
	if up != l.connected {
		l.since = now
	}
	l.connected, l.problem = up, problem
	if problem != "" {
		l.problemAt = now
	}
	if up {
		l.silent = false
	}
	return changed
}

// disconnected records a lost connection, keeping the reason a handshake
// failed (MISP hangs up after refusing credentials); it reports whether the
// connection was up.
func (l *liveness) disconnected(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.connected
	if was {
		l.since = now
	}
	l.connected = false
	return was
}

// setProblem records a failure of a connection that is otherwise up (a
// Kafka fetch error) and reports whether it is news.
func (l *liveness) setProblem(problem string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := problem != l.problem
	l.problem, l.problemAt = problem, now
	return changed
}

// problemSince returns the current problem if it was seen after cutoff.
func (l *liveness) problemSince(cutoff time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.problemAt.After(cutoff) {
		return l.problem
	}
	return ""
}

// heard records that MISP sent something; it reports whether MISP had
// been reported silent before.
func (l *liveness) heard(now time.Time) (wasSilent bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastHeard = now
	wasSilent, l.silent = l.silent, false
	return wasSilent
}

// checkSilence reports, once, that MISP has been silent for longer than
// timeout while connected.
func (l *liveness) checkSilence(timeout time.Duration, now time.Time) (newlySilent bool, last time.Time) {
	if timeout <= 0 {
		return false, time.Time{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected || l.silent {
		return false, l.lastHeard
	}
	ref := l.lastHeard
	if ref.Before(l.since) {
		ref = l.since
	}
	if now.Sub(ref) > timeout {
		l.silent = true
		return true, l.lastHeard
	}
	return false, l.lastHeard
}

func (l *liveness) state() (connected bool, lastHeard time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected, l.lastHeard
}

func lastHeardText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// ready is nil while the intake is connected and (for ZeroMQ) MISP spoke
// within timeout.
func (l *liveness) ready(timeout time.Duration, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	last := lastHeardText(l.lastHeard)
	switch {
	case !l.running:
		return fmt.Errorf("misp: the %s intake is not running (last heard from MISP: %s)", l.intake, last)
	case l.problem != "":
		return fmt.Errorf("misp: %s (%s intake, %s; last heard from MISP: %s)", l.problem, l.intake, l.endpoint, last)
	case !l.connected:
		return fmt.Errorf("misp: not connected to MISP's %s at %s since %s, retrying (last heard from MISP: %s)",
			intakeName(l.intake), l.endpoint, l.since.UTC().Format(time.RFC3339), last)
	}
	if l.intake == "zmq" && timeout > 0 {
		ref := l.lastHeard
		if ref.Before(l.since) {
			ref = l.since
		}
		if d := now.Sub(ref); d > timeout {
			return fmt.Errorf("misp: connected to %s but nothing heard from MISP for %s, not even a heartbeat (last heard: %s)",
				l.endpoint, d.Truncate(time.Second), last)
		}
	}
	return nil
}

func intakeName(intake string) string {
	if intake == "kafka" {
		return "Kafka brokers"
	}
	return "ZeroMQ publisher"
}

// skipped counts one attribute that did not become an indicator, logging
// the first of each cause.
func (s *state) skipped(t *tally, where string, err error) {
	cause := causeMalformed
	var sk *skip
	if errors.As(err, &sk) {
		cause = sk.cause
	}
	log := s.logger()
	if t.add(cause) && cause != causeToIDs && cause != causeFiltered {
		log.Warn("misp: "+where+": attribute not mapped to an indicator", "cause", cause, "error", err,
			"note", "logged once per cause; further ones are counted (debug logs each)")
		return
	}
	log.Debug("misp: "+where+": attribute skipped", "cause", cause, "error", err)
}

// logAttrs are the logging attributes of the main counters.
func (st Stats) logAttrs() []any {
	return []any{"received", st.Received, "published", st.Published, "skipped", st.Skipped,
		"sightings_sent", st.Sightings.Sent, "sightings_rejected", st.Sightings.Rejected,
		"sightings_dropped", st.Sightings.Dropped, "sightings_queued", st.Sightings.Queued,
		"last_heard", lastHeardText(st.LastHeard)}
}

// Report implements plugins.Reporter: Stats in the status, and as metrics.
func (a *App) Report() plugins.Report {
	st := a.Stats()
	var m []plugins.Metric
	add := func(name, help string, counter bool, v float64, labels ...string) {
		var l map[string]string
		if len(labels) == 2 {
			l = map[string]string{labels[0]: labels[1]}
		}
		m = append(m, plugins.Metric{Name: "misp_" + name, Help: help, Counter: counter, Labels: l, Value: v})
	}
	connected, heard := 0.0, 0.0
	if st.Connected {
		connected = 1
	}
	if !st.LastHeard.IsZero() {
		heard = float64(st.LastHeard.UnixMilli()) / 1e3
	}
	add("connected", "1 when the intake (ZeroMQ or Kafka) is connected.", false, connected)
	add("last_heard_timestamp_seconds", "When MISP last sent anything (Unix time; 0: never).", false, heard)
	add("heartbeats_total", "misp_json_self heartbeats received.", true, float64(st.Heartbeats))
	add("attributes_received_total", "Attribute messages read from the intake.", true, float64(st.Received))
	for action, n := range st.Published {
		add("indicators_published_total", "Indicators put on the bus, by action.", true, float64(n), "action", action)
	}
	for cause, n := range st.Skipped {
		add("attributes_skipped_total", "Attribute messages that did not become indicators, by cause.", true, float64(n), "cause", cause)
	}
	s := st.Sightings
	add("sightings_queued", "Sightings waiting to be sent to MISP.", false, float64(s.Queued))
	add("sightings_sent_total", "Sightings MISP accepted.", true, float64(s.Sent))
	add("sightings_rejected_total", "Sightings MISP refused (not retried).", true, float64(s.Rejected))
	add("sightings_dropped_total", "Sightings thrown away because the queue was full.", true, float64(s.Dropped))
	add("sightings_retries_total", "Sighting attempts that failed transiently and were repeated.", true, float64(s.Retries))
	add("snapshot_requests_total", "Indicator snapshot requests served.", true, float64(st.Snapshots.Requests))
	add("snapshot_indicators_total", "Indicators replied to snapshot requests.", true, float64(st.Snapshots.Indicators))
	add("snapshot_failures_total", "Snapshot searches that failed.", true, float64(st.Snapshots.Failed))
	return plugins.Report{Details: st, Metrics: m}
}
