package cluster_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/threatbus/threatbus/tests/bustest"
)

func startThree(t *testing.T) ([]*proc, []string) {
	nodes := loopbackNodes(t, 3)
	name := fmt.Sprintf("c-%d", time.Now().UnixNano())
	confs := make([]string, 3)
	ps := make([]*proc, 3)
	for i, n := range nodes {
		confs[i] = automanagedConf(name, n, nodes)
		ps[i] = startProc(t, fmt.Sprintf("member-%d", i), confs[i], nil)
	}
	waitFormed(t, 40*time.Second, ps...)
	return ps, confs
}

// TestKillUnderLoad: while two members publish steadily, the third is
// killed with SIGKILL. The survivors keep delivering each other's messages
// with no loss and no duplicate; the killed member, restarted, rejoins and
// receives what is published afterwards.
func TestKillUnderLoad(t *testing.T) {
	ps, confs := startThree(t)
	a, b, c := ps[0], ps[1], ps[2]

	const per = 600
	var mu sync.Mutex
	want := map[string]bool{}
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for i, p := range []*proc{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < per; k++ {
				pl := bustest.Indicator(t, (i+1)<<16|k)
				mu.Lock()
				want[string(pl)] = true
				mu.Unlock()
				p.publish(t, pl)
				if k == per/3 && i == 0 {
					close(killed)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	<-killed
	c.Kill(t)
	wg.Wait()
	waitReceived(t, 2*per, a, b)
	checkExactlyOnce(t, a, want)
	checkExactlyOnce(t, b, want)
	for _, p := range []*proc{a, b} {
		st, ok := p.tryStatus(5 * time.Second)
		if !ok {
			t.Fatalf("%s: no status", p.name)
		}
		t.Logf("%s after the kill: members=%d dropped=%v", p.name, len(st.Members), st.Dropped)
	}

	c2 := startProc(t, "member-2-restarted", confs[2], nil)
	waitFormed(t, 40*time.Second, a, b, c2)
	before := map[*proc]int{a: a.received(), b: b.received()}
	want2 := publishRound(t, []*proc{a, b, c2}, 10, 0, 50)
	for _, p := range []*proc{a, b} {
		eventually(t, 30*time.Second, p.name+" to receive the new round", func() bool { return p.received() >= before[p]+len(want2) })
	}
	eventually(t, 30*time.Second, "the restarted member to receive the new round", func() bool { return c2.received() >= len(want2) })
	time.Sleep(500 * time.Millisecond)
	checkExactlyOnce(t, c2, want2)
	if got := c2.received(); got != len(want2) {
		t.Errorf("restarted member received %d, want %d", got, len(want2))
	}
	for _, p := range []*proc{a, b} {
		all := map[string]bool{}
		for k := range want {
			all[k] = true
		}
		for k := range want2 {
			all[k] = true
		}
		checkExactlyOnce(t, p, all)
	}
}

// TestPauseRejoin: a member stopped with SIGSTOP long enough to be evicted
// detects the eviction after SIGCONT and rejoins by itself, under a new id;
// it then receives new messages, and delivers nothing twice. While it
// rejoins, its Status never names a member without its address (it named
// the new id for a second before the address, which was written without
// the lock Status reads it under).
func TestPauseRejoin(t *testing.T) {
	t.Parallel()
	ps, _ := startThree(t)
	a, b, c := ps[0], ps[1], ps[2]
	want := publishRound(t, ps, 1, 0, 20)
	waitReceived(t, len(want), ps...)
	before, _ := c.tryStatus(5 * time.Second)

	c.Signal(t, syscall.SIGSTOP)
	for _, p := range []*proc{a, b} {
		eventually(t, 30*time.Second, p.name+" to evict the paused member", func() bool {
			st, ok := p.tryStatus(5 * time.Second)
			return ok && len(st.Members) == 2 && len(st.Peers) == 1
		})
	}
	// Published while c is out: a and b get these, c does not.
	during := publishRound(t, []*proc{a, b}, 20, 0, 10)
	c.Signal(t, syscall.SIGCONT)
	polls, halfway := 0, 0
	eventually(t, 60*time.Second, "the paused member to rejoin", func() bool {
		st, ok := c.tryStatus(5 * time.Second)
		polls++
		if ok && st.Member != "" && st.Address == "" {
			halfway++
		}
		return ok && st.Rejoins >= 1 && st.State == "joined"
	})
	if halfway > 0 {
		t.Errorf("%d of %d statuses during the rejoin named a member without an address", halfway, polls)
	}
	waitFormed(t, 60*time.Second, a, b, c)
	after, _ := c.tryStatus(5 * time.Second)
	if after.Rejoins < 1 || after.Member == before.Member {
		t.Fatalf("paused member: rejoins=%d, id %s → %s: it did not rejoin", after.Rejoins, before.Member, after.Member)
	}
	if after.LastRejoin == "" {
		t.Errorf("status gives no reason for the rejoin")
	}
	t.Logf("rejoined: %s → %s, reason %q", before.Member, after.Member, after.LastRejoin)
	cBefore := c.received()
	want2 := publishRound(t, ps, 30, 0, 30)
	eventually(t, 30*time.Second, "the rejoined member to receive the new round", func() bool { return c.received() >= cBefore+len(want2) })
	time.Sleep(500 * time.Millisecond)
	all := map[string]bool{}
	for _, m := range []map[string]bool{want, want2} {
		for k := range m {
			all[k] = true
		}
	}
	// c: the first and last rounds once each, nothing twice, nothing else
	// than what a member may have queued for it (none of "during" arrives,
	// since it was evicted when those were published).
	checkExactlyOnce(t, c, all)
	if got := c.received(); got != len(all) {
		t.Errorf("rejoined member received %d, want %d", got, len(all))
	}
	for k := range during {
		all[k] = true
	}
	for _, p := range []*proc{a, b} {
		checkExactlyOnce(t, p, all)
		if got := p.received(); got != len(all) {
			t.Errorf("%s received %d, want %d", p.name, got, len(all))
		}
	}
}

// TestRestartInProcess: the bus restarts a crashed backbone actor, which
// stops the backbone and starts it again in the same process. The member
// comes back (a new id) and relays in both directions, nothing is delivered
// twice, and once the bus stops no goroutine of this package is left.
func TestRestartInProcess(t *testing.T) {
	t.Parallel()
	nodes := loopbackNodes(t, 2)
	name := fmt.Sprintf("restart-%d", time.Now().UnixNano())
	a := startProc(t, "member-a", automanagedConf(name, nodes[0], nodes)+"\n[chaos]\nenabled = true\n", nil)
	b := startProc(t, "member-b", automanagedConf(name, nodes[1], nodes), nil)
	waitFormed(t, 40*time.Second, a, b)
	all := map[string]bool{}
	add := func(m map[string]bool) {
		for k := range m {
			all[k] = true
		}
	}
	add(publishRound(t, []*proc{a, b}, 1, 0, 20))
	waitReceived(t, len(all), a, b)
	ids := map[string]bool{}
	for round := 0; round < 2; round++ {
		st, _ := a.tryStatus(5 * time.Second)
		ids[st.Member] = true
		a.Send(t, "!crash")
		eventually(t, 30*time.Second, "the backbone to restart under a new id", func() bool {
			st, ok := a.tryStatus(5 * time.Second)
			return ok && st.Member != "" && !ids[st.Member]
		})
		waitFormed(t, 40*time.Second, a, b)
		add(publishRound(t, []*proc{a, b}, 10*(round+1), 0, 20))
		waitReceived(t, len(all), a, b)
	}
	checkExactlyOnce(t, a, all)
	checkExactlyOnce(t, b, all)
	st := a.stop(t)
	var leaks []string
	if err := json.Unmarshal(st["leaks"], &leaks); err != nil {
		t.Fatal(err)
	}
	if len(leaks) > 0 {
		t.Errorf("goroutines of the cluster package left after the stop:\n%s", strings.Join(leaks, "\n\n"))
	}
	if !strings.Contains(a.Log.String(), "fault injection: crashing") {
		t.Errorf("no crash was injected")
	}
}
