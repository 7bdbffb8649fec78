package cluster_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// netnsPair creates two network namespaces joined by a veth pair, with
// private addresses that exist only inside them, and deletes them when the
// test ends. It needs root and iproute2.
func netnsPair(t *testing.T) (nsA, nsB, ifA, addrA, addrB string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the network namespace test needs root (ip netns)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip (iproute2) not found: %v", err)
	}
	tag := fmt.Sprintf("%d%04d", os.Getpid()%10000, rand.IntN(10000))
	nsA, nsB = "tbc-"+tag+"-a", "tbc-"+tag+"-b"
	ifA, ifB := "tbv"+tag+"a", "tbv"+tag+"b"
	subnet := fmt.Sprintf("10.%d.%d", 100+rand.IntN(100), rand.IntN(250))
	addrA, addrB = subnet+".1", subnet+".2"
	ip(t, "netns", "add", nsA)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", nsA).Run() })
	ip(t, "netns", "add", nsB)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", nsB).Run() })
	ip(t, "link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	ip(t, "-n", nsA, "addr", "add", addrA+"/24", "dev", ifA)
	ip(t, "-n", nsB, "addr", "add", addrB+"/24", "dev", ifB)
	for _, x := range [][2]string{{nsA, ifA}, {nsB, ifB}, {nsA, "lo"}, {nsB, "lo"}} {
		ip(t, "-n", x[0], "link", "set", x[1], "up")
	}
	return nsA, nsB, ifA, addrA, addrB
}

// TestNetworkNamespaces: two members in separate network namespaces, on
// addresses that exist only there, form a cluster and relay; when the link
// between them is cut they split, and when it is restored the cluster heals
// by itself (one side rejoins under a new id) and relays again.
func TestNetworkNamespaces(t *testing.T) {
	t.Parallel()
	nsA, nsB, ifA, addrA, addrB := netnsPair(t)
	nodes := []node{{host: addrA, grpc: 14001, health: 14101}, {host: addrB, grpc: 14001, health: 14101}}
	name := "netns"
	a := startProc(t, "member-a", automanagedConf(name, nodes[0], nodes), nil, "ip", "netns", "exec", nsA)
	b := startProc(t, "member-b", automanagedConf(name, nodes[1], nodes), nil, "ip", "netns", "exec", nsB)
	waitFormed(t, 40*time.Second, a, b)
	want := publishRound(t, []*proc{a, b}, 1, 0, 50)
	waitReceived(t, len(want), a, b)
	checkExactlyOnce(t, a, want)
	checkExactlyOnce(t, b, want)

	ip(t, "-n", nsA, "link", "set", ifA, "down")
	for _, p := range []*proc{a, b} {
		eventually(t, 30*time.Second, p.name+" to see the other side gone", func() bool {
			st, ok := p.tryStatus(5 * time.Second)
			return ok && len(st.Members) == 1 && len(st.Peers) == 0
		})
	}
	ip(t, "-n", nsA, "link", "set", ifA, "up")
	waitFormed(t, 60*time.Second, a, b)
	sa, _ := a.tryStatus(5 * time.Second)
	sb, _ := b.tryStatus(5 * time.Second)
	if sa.Rejoins+sb.Rejoins == 0 {
		t.Errorf("the cluster healed without a rejoin: %+v %+v", sa, sb)
	}
	t.Logf("healed: rejoins a=%d b=%d", sa.Rejoins, sb.Rejoins)
	before := a.received()
	want2 := publishRound(t, []*proc{a, b}, 10, 0, 50)
	waitReceived(t, before+len(want2), a, b)
	for k := range want {
		want2[k] = true
	}
	checkExactlyOnce(t, a, want2)
	checkExactlyOnce(t, b, want2)
}
