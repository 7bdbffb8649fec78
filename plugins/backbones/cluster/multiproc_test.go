package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/threatbus/threatbus/tests/bustest"
)

// publishRound publishes n messages on each member, interleaved; publisher
// i's messages carry seq i<<16|k. It returns the payloads, for
// checkExactlyOnce.
func publishRound(t *testing.T, ps []*proc, pubBase, from, n int) map[string]bool {
	t.Helper()
	want := map[string]bool{}
	for k := from; k < from+n; k++ {
		for i, p := range ps {
			var pl []byte
			if k%2 == 0 {
				pl = bustest.Indicator(t, (pubBase+i)<<16|k)
			} else {
				pl = bustest.Sighting(t, (pubBase+i)<<16|k)
			}
			want[string(pl)] = true
			p.publish(t, pl)
		}
	}
	return want
}

// waitReceived waits until every member has at least n deliveries, then
// makes sure nothing more arrives.
func waitReceived(t *testing.T, n int, ps ...*proc) {
	t.Helper()
	for _, p := range ps {
		eventually(t, 30*time.Second, fmt.Sprintf("%s to receive %d messages", p.name, n), func() bool { return p.received() >= n })
	}
	time.Sleep(500 * time.Millisecond)
	for _, p := range ps {
		if got := p.received(); got != n {
			t.Errorf("%s received %d messages, want %d", p.name, got, n)
		}
	}
}

// threeMembers: three members, each publishing; every member's subscriber
// gets every message once, each publisher's in order.
func threeMembers(t *testing.T, confs []string) []*proc {
	ps := make([]*proc, len(confs))
	for i, c := range confs {
		ps[i] = startProc(t, fmt.Sprintf("member-%d", i), c, nil)
	}
	waitFormed(t, 40*time.Second, ps...)
	const per = 200
	want := publishRound(t, ps, 1, 0, per)
	waitReceived(t, len(want), ps...)
	for _, p := range ps {
		checkExactlyOnce(t, p, want)
	}
	for _, p := range ps {
		st, ok := p.tryStatus(5 * time.Second)
		if !ok {
			t.Fatalf("%s: no status", p.name)
		}
		for _, peer := range st.Peers {
			if peer.Acked != per || peer.Queued != 0 || len(peer.Dropped) != 0 {
				t.Errorf("%s → %s: acked %d of %d, queued %d, dropped %v", p.name, peer.Address, peer.Acked, per, peer.Queued, peer.Dropped)
			}
		}
		if st.Received != 2*per {
			t.Errorf("%s: received %d forwards, want %d", p.name, st.Received, 2*per)
		}
	}
	return ps
}

// TestThreeMembers: three members as separate processes on loopback
// (automanaged membership): what is published on any member reaches the
// subscriber of every member exactly once, in per-publisher order; a
// graceful stop drops nothing.
func TestThreeMembers(t *testing.T) {
	nodes := loopbackNodes(t, 3)
	name := fmt.Sprintf("three-%d", time.Now().UnixNano())
	confs := make([]string, 3)
	for i, n := range nodes {
		confs[i] = automanagedConf(name, n, nodes)
	}
	ps := threeMembers(t, confs)
	for _, p := range ps {
		p.stop(t)
	}
}

// TestSnapshotAnsweredOnce: every member runs the same snapshot-capable app
// (as members configured alike do). A snapshot requested on one member is
// asked of every member's app, and the requester gets each indicator once,
// not once per member.
func TestSnapshotAnsweredOnce(t *testing.T) {
	nodes := loopbackNodes(t, 3)
	name := fmt.Sprintf("snap-%d", time.Now().UnixNano())
	ps := make([]*proc, 3)
	for i, n := range nodes {
		ps[i] = startProc(t, fmt.Sprintf("member-%d", i), automanagedConf(name, n, nodes)+"\n[apps.snapper]\n", nil)
	}
	waitFormed(t, 40*time.Second, ps...)
	ps[0].Send(t, "!snapshot")
	snaps := func() [][]byte {
		ps[0].mu.Lock()
		defer ps[0].mu.Unlock()
		return append([][]byte{}, ps[0].snaps...)
	}
	for _, p := range ps {
		eventually(t, 30*time.Second, p.name+"'s snapper to be asked", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.asked > 0
		})
	}
	eventually(t, 30*time.Second, "five snapshot bodies", func() bool { return len(snaps()) >= 5 })
	// Every member answered all five: the requester removed ten copies.
	eventually(t, 30*time.Second, "the other members' ten copies to arrive and be removed", func() bool {
		st, ok := ps[0].daemonStats(5 * time.Second)
		return ok && st.Deduplicated["snapshot"] >= 10
	})
	count := map[string]int{}
	for _, b := range snaps() {
		count[string(b)]++
	}
	if len(count) != 5 {
		t.Fatalf("got %d distinct bodies, want 5", len(count))
	}
	for b, n := range count {
		if n != 1 {
			t.Errorf("body delivered %d times, want once: %.80s", n, b)
		}
	}
	for _, p := range ps {
		p.mu.Lock()
		asked := p.asked
		p.mu.Unlock()
		if asked != 1 {
			t.Errorf("%s's snapper was asked %d times, want once", p.name, asked)
		}
	}
}
