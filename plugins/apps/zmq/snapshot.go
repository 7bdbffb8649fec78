package zmq

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins"
)

// How long and how many snapshot ids this app accepts envelopes for. The
// bus forgets a snapshot after bus.snapshot_ttl (10 minutes by default); an
// hour here never cuts that short.
const (
	snapshotMemory = time.Hour
	snapshotIDs    = 10000
)

// Snapshot implements plugins.Snapshotter: the request goes to every app
// subscribed here except the one that asked, on "<p2p>snapshotrequest".
// Their envelopes come back on the SUB socket and are published, and the bus
// routes each body to the requester. Apps that are not connected yet get the
// request once they are, and so do apps while the app's sockets are closed
// (a restart); an app holding max_pending messages already is skipped (and
// counted).
func (a *App) Snapshot(_ context.Context, req plugins.SnapshotRequest, _ func(body []byte) error) error {
	st := a.st
	if st == nil {
		return errors.New("zmq: Snapshot before Init")
	}
	r, err := stix.NewSnapshotRequest(stix.SnapshotType(req.Type), req.ID, req.Window)
	if err != nil {
		return fmt.Errorf("zmq: snapshot %s: %w", req.ID, err)
	}
	st.snapshots.add(req.ID, time.Now())
	sent, skipped := 0, 0
	for _, c := range st.list() {
		if c.sub.SnapshotID() == req.ID {
			continue // the requester
		}
		f := frame(c.p2p, "snapshotrequest", r.Raw)
		if st.offer(c, f) {
			sent++
		} else {
			f.recycle()
			c.snapshotSkipped.Add(1)
			skipped++
		}
	}
	st.logger().Debug("forwarded a snapshot request", "snapshot", req.ID, "type", req.Type.String(), "window", req.Window, "apps", sent, "skipped", skipped)
	return nil
}

// idSet remembers strings for a while, up to a number of them (oldest
// forgotten first).
type idSet struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	seen  map[string]time.Time
	order []string
}

func newIDSet(ttl time.Duration, max int) *idSet {
	return &idSet{ttl: ttl, max: max, seen: map[string]time.Time{}}
}

func (s *idSet) add(id string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.order) > 0 && (len(s.order) >= s.max || now.Sub(s.seen[s.order[0]]) > s.ttl) {
		delete(s.seen, s.order[0])
		s.order = s.order[1:]
	}
	if _, ok := s.seen[id]; !ok {
		s.order = append(s.order, id)
	}
	s.seen[id] = now
}

func (s *idSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.seen[id]
	return ok && time.Since(t) <= s.ttl
}

// How long and how many published objects echo suppression remembers.
const (
	echoMemory  = 10 * time.Minute
	echoEntries = 1 << 16
)

// echoTable remembers which peer address recently published which bytes,
// for suppress_echo. Apps publish on one connection and receive on another,
// and zmq tells nothing that ties the two together but the peer's address:
// that is the granularity of the suppression.
type echoTable struct {
	mu   sync.Mutex
	seed maphash.Seed
	ttl  time.Duration
	m    map[uint64]echoEntry
	ring []uint64
	next int
}

type echoEntry struct {
	peer string
	at   time.Time
	slot int // its place in ring, so that a stale slot does not evict it
}

func newEchoTable(ttl time.Duration, size int) *echoTable {
	return &echoTable{seed: maphash.MakeSeed(), ttl: ttl, m: map[uint64]echoEntry{}, ring: make([]uint64, 0, size)}
}

func (t *echoTable) hash(payload []byte) uint64 { return maphash.Bytes(t.seed, payload) | 1 } // never 0: "no hash"

func (t *echoTable) add(payload []byte, peer string) {
	h := t.hash(payload)
	t.mu.Lock()
	defer t.mu.Unlock()
	slot := len(t.ring)
	if slot < cap(t.ring) {
		t.ring = append(t.ring, h)
	} else {
		slot = t.next
		if old, ok := t.m[t.ring[slot]]; ok && old.slot == slot {
			delete(t.m, t.ring[slot])
		}
		t.ring[slot] = h
		t.next = (t.next + 1) % len(t.ring)
	}
	t.m[h] = echoEntry{peer: peer, at: time.Now(), slot: slot}
}

// from reports whether the payload of hash h was published from peer
// recently.
func (t *echoTable) from(h uint64, peer string) bool {
	t.mu.Lock()
	e, ok := t.m[h]
	t.mu.Unlock()
	return ok && e.peer == peer && time.Since(e.at) <= t.ttl
}
