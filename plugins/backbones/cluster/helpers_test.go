package cluster_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/threatbus/threatbus/actors"
	"github.com/threatbus/threatbus/plugins/backbones/cluster"
	"github.com/threatbus/threatbus/tests/bustest"
	"github.com/threatbus/threatbus/tests/proctest"
)

// Test timing: fast membership, so that the tests take seconds.
const testTiming = `
ack_timeout = "1s"
ping_interval = "200ms"
rejoin_after = "5s"
`

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup()
	os.Exit(code)
}

// envOwnProcess names the test a process of this test binary runs by
// itself (see inOwnProcess).
const envOwnProcess = "CLUSTER_TEST_OWN_PROCESS" // not THREATBUS_…: the config loader reads those

// inOwnProcess runs the calling test in a fresh process of this test binary
// (so under -race too) and reports whether the caller is that process: the
// test's body runs when it returns true. A test that runs a member in its
// own process needs one: protoactor's remote sets gRPC's global logger on
// start, which races with the gRPC goroutines of any remote started before
// it in the process (README.md). The parent fails when the process does
// not pass, and logs its output.
func inOwnProcess(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envOwnProcess) == t.Name() {
		return true
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envOwnProcess+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s in its own process: %v\n%s", t.Name(), err, proctest.Tail(string(out), 8000))
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "_test.go:") { // what the test logged
			t.Log(strings.TrimSpace(line))
		}
	}
	return false
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// node is where one member listens.
type node struct {
	host         string
	grpc, health int
}

func (n node) healthAddr() string { return fmt.Sprintf("%s:%d", n.host, n.health) }

// loopbackNodes picks 2k distinct free ports: all are held open until all
// are chosen, so none is handed out twice.
func loopbackNodes(t testing.TB, k int) []node {
	t.Helper()
	ports := make([]int, 2*k)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	out := make([]node, k)
	for i := range out {
		out[i] = node{host: "127.0.0.1", grpc: ports[2*i], health: ports[2*i+1]}
	}
	return out
}

// automanagedConf is the config of member self in a cluster of all.
func automanagedConf(name string, self node, all []node) string {
	hosts := make([]string, len(all))
	for i, n := range all {
		hosts[i] = fmt.Sprintf("%q", n.healthAddr())
	}
	return fmt.Sprintf(`[bus]
drain_timeout = "10s"

[backbones.cluster]
cluster_name = %q
bind = "%s:%d"
provider = "automanaged"
%s
[backbones.cluster.automanaged]
port = %d
hosts = [%s]
refresh = "300ms"

[backbones.cluster.tls]
disabled = true

[apps.lines]
`, name, self.host, self.grpc, testTiming, self.health, strings.Join(hosts, ", "))
}

func etcdConf(name string, self node, endpoint string) string {
	return fmt.Sprintf(`[bus]
drain_timeout = "10s"

[backbones.cluster]
cluster_name = %q
bind = "%s:%d"
provider = "etcd"
%s
[backbones.cluster.etcd]
endpoints = [%q]
base_key = "/threatbus-test"

[backbones.cluster.tls]
disabled = true

[apps.lines]
`, name, self.host, self.grpc, testTiming, endpoint)
}

// recv is one delivery a member reported.
type recv struct {
	topic, id string
	payload   []byte
}

// proc is a bus running as its own process (internal/testbus).
type proc struct {
	*proctest.Proc
	name string

	mu     sync.Mutex
	got    []recv
	snaps  [][]byte // SNAP lines: the snapshot subscription's deliveries
	asked  int      // ASKED lines: snapshot requests this member's snapper answered
	status chan string
	count  chan string
	daemon chan string
}

// startProc starts testbus with conf; prefix (e.g. ip netns exec NS) is
// prepended to the command line.
func startProc(t testing.TB, name, conf string, env []string, prefix ...string) *proc {
	t.Helper()
	p := &proc{name: name, status: make(chan string, 1), count: make(chan string, 1), daemon: make(chan string, 1)}
	p.Proc = proctest.Start(t, name, proctest.Build(t, "./internal/testbus"), conf, proctest.Options{Env: env, Prefix: prefix}, p.handle)
	return p
}

// handle takes one line of the process's protocol (see internal/testbus).
func (p *proc) handle(kind, rest string) {
	switch kind {
	case "RECV":
		f := strings.SplitN(rest, " ", 3)
		if len(f) != 3 {
			return
		}
		payload, _ := base64.StdEncoding.DecodeString(f[2])
		p.mu.Lock()
		p.got = append(p.got, recv{topic: f[0], id: f[1], payload: payload})
		p.mu.Unlock()
	case "SNAP":
		payload, _ := base64.StdEncoding.DecodeString(rest)
		p.mu.Lock()
		p.snaps = append(p.snaps, payload)
		p.mu.Unlock()
	case "ASKED":
		p.mu.Lock()
		p.asked++
		p.mu.Unlock()
	case "STATUS":
		p.status <- rest
	case "COUNT":
		p.count <- rest
	case "DAEMON":
		p.daemon <- rest
	}
}

func (p *proc) publish(t testing.TB, payload []byte) {
	t.Helper()
	p.Send(t, base64.StdEncoding.EncodeToString(payload))
}

// tryStatus asks for the backbone's Status; ok is false when the process
// does not answer in time (it may be stopped).
func (p *proc) tryStatus(wait time.Duration) (st cluster.Status, ok bool) {
	if !p.TrySend("?") {
		return st, false
	}
	select {
	case s := <-p.status:
		if err := json.Unmarshal([]byte(s), &st); err != nil {
			return st, false
		}
		return st, true
	case <-time.After(wait):
		return st, false
	}
}

// daemonStats asks for the daemon's counters; ok is false when the
// process does not answer in time.
func (p *proc) daemonStats(wait time.Duration) (st actors.Stats, ok bool) {
	if !p.TrySend("%") {
		return st, false
	}
	select {
	case s := <-p.daemon:
		return st, json.Unmarshal([]byte(s), &st) == nil
	case <-time.After(wait):
		return st, false
	}
}

// delivered asks for the number of deliveries so far (counted also with
// TESTBUS_COUNT_ONLY); ok is false when the process does not answer in time.
func (p *proc) delivered(wait time.Duration) (n int, ok bool) {
	if !p.TrySend("#") {
		return 0, false
	}
	select {
	case s := <-p.count:
		n, err := strconv.Atoi(s)
		return n, err == nil
	case <-time.After(wait):
		return 0, false
	}
}

func (p *proc) deliveries() []recv {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]recv(nil), p.got...)
}

func (p *proc) received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

// stop sends SIGTERM and returns the final STATS.
func (p *proc) stop(t testing.TB) map[string]json.RawMessage {
	t.Helper()
	return p.Stop(t, 40*time.Second)
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// formed reports whether st shows a joined member with n members, each of
// its peers counting it as a member.
func formed(st cluster.Status, n int) bool {
	if st.State != "joined" || len(st.Members) != n || len(st.Peers) != n-1 {
		return false
	}
	for _, p := range st.Peers {
		if !p.KnowsUs {
			return false
		}
	}
	return true
}

// waitFormed waits until every member of ps sees the same n members.
func waitFormed(t testing.TB, d time.Duration, ps ...*proc) {
	t.Helper()
	var last []string
	deadline := time.Now().Add(d)
	for {
		ok := true
		last = last[:0]
		for _, p := range ps {
			st, answered := p.tryStatus(5 * time.Second)
			last = append(last, fmt.Sprintf("%s: answered=%v state=%s members=%d peers=%d", p.name, answered, st.State, len(st.Members), len(st.Peers)))
			if !answered || !formed(st, len(ps)) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster of %d did not form within %s: %s", len(ps), d, strings.Join(last, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// seqOf is the x_seq of a payload made by bustest.
func seqOf(t *testing.T, payload []byte) int { return bustest.Seq(t, payload) }

// checkExactlyOnce checks that p received every payload of want exactly
// once (by envelope id and by payload), nothing else, and each publisher's
// messages in order (publisher = seq>>16).
func checkExactlyOnce(t *testing.T, p *proc, want map[string]bool) {
	t.Helper()
	got := p.deliveries()
	ids := map[string]int{}
	payloads := map[string]int{}
	next := map[int]int{}
	for _, r := range got {
		ids[r.id]++
		payloads[string(r.payload)]++
		if !want[string(r.payload)] {
			continue
		}
		seq := seqOf(t, r.payload)
		pub, i := seq>>16, seq&0xffff
		if i < next[pub] {
			t.Errorf("%s: publisher %d: message %d after %d: out of order", p.name, pub, i, next[pub]-1)
		}
		next[pub] = i + 1
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("%s: envelope %s delivered %d times", p.name, id, n)
		}
	}
	missing := 0
	for w := range want {
		switch n := payloads[w]; {
		case n == 0:
			missing++
		case n > 1:
			t.Errorf("%s: a payload delivered %d times", p.name, n)
		}
	}
	if missing > 0 {
		t.Errorf("%s: %d of %d messages missing", p.name, missing, len(want))
	}
}
