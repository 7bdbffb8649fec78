package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins/backbones/cluster"
	"github.com/threatbus/threatbus/tests/bustest"
	"github.com/threatbus/threatbus/tests/proctest"
)

// startEtcd runs Debian's etcd (etcd-server) on free loopback ports with a
// temporary data dir and returns its client endpoint and its process. A
// missing binary fails the test: install it with scripts/setup.sh.
func startEtcd(t *testing.T) (string, *os.Process) {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd not found (apt-get install -y etcd-server): %v", err)
	}
	client, peer := freePort(t), freePort(t)
	endpoint := fmt.Sprintf("127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	cmd := exec.Command(bin,
		"--name", "threatbus-test",
		"--data-dir", t.TempDir(),
		"--listen-client-urls", "http://"+endpoint,
		"--advertise-client-urls", "http://"+endpoint,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "threatbus-test="+peerURL,
		"--log-level", "error")
	log := &bustest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("etcd log:\n%s", proctest.Tail(log.String(), 4000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + endpoint + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return endpoint, cmd.Process
			}
		}
		select {
		case <-exited:
			t.Fatalf("etcd exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not become healthy:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestThreeMembersEtcd: TestThreeMembers with membership in a real etcd.
func TestThreeMembersEtcd(t *testing.T) {
	t.Parallel()
	endpoint, _ := startEtcd(t)
	nodes := loopbackNodes(t, 3)
	name := fmt.Sprintf("etcd-%d", time.Now().UnixNano())
	confs := make([]string, 3)
	for i, n := range nodes {
		confs[i] = etcdConf(name, n, endpoint)
	}
	ps := threeMembers(t, confs)
	for _, p := range ps {
		p.stop(t)
	}
}

// withDialTimeout sets etcd.dial_timeout in a config of etcdConf.
func withDialTimeout(conf, d string) string {
	return strings.Replace(conf, "base_key = \"/threatbus-test\"\n", "base_key = \"/threatbus-test\"\ndial_timeout = \""+d+"\"\n", 1)
}

// TestEtcdUnreachable: with nothing answering at the etcd endpoint, Start
// gives up after etcd.dial_timeout with an error about etcd, leaves nothing
// listening, and Status answers ("joining") meanwhile. (Start blocked
// forever: the provider's etcd calls have no deadline; and it held the
// lock Status takes.) The member runs in this test's process.
func TestEtcdUnreachable(t *testing.T) {
	if !inOwnProcess(t) {
		return
	}
	n := loopbackNodes(t, 1)[0]
	endpoint := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	b := parseBackbone(t, withDialTimeout(etcdConf("unreachable", n, endpoint), "1s"))
	started := make(chan error, 1)
	begin := time.Now()
	go func() { started <- b.Start(context.Background(), func(*messages.Envelope) {}) }()
	time.Sleep(300 * time.Millisecond)
	answered := make(chan cluster.Status, 1)
	go func() { answered <- b.Status() }()
	select {
	case st := <-answered:
		if st.State != "joining" {
			t.Errorf("Status while Start waits for etcd: state %q, want joining", st.State)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Status blocked while Start waited for etcd")
	}
	select {
	case err := <-started:
		took := time.Since(begin)
		if err == nil || !strings.Contains(err.Error(), "etcd "+endpoint) || !strings.Contains(err.Error(), "dial_timeout") {
			t.Errorf("Start: %v, want an error saying etcd at %s did not answer within dial_timeout", err, endpoint)
		}
		if took > 4*time.Second {
			t.Errorf("Start took %s with dial_timeout 1s", took.Round(time.Millisecond))
		}
		t.Logf("Start returned after %s: %v", took.Round(time.Millisecond), err)
	case <-time.After(15 * time.Second):
		t.Fatal("Start had not returned 15s after it began, with etcd unreachable and dial_timeout 1s")
	}
	if st := b.Status(); st.State != "stopped" || b.Ready() == nil {
		t.Errorf("after the failed Start: state %q, ready %v", st.State, b.Ready())
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", n.grpc))
	if err != nil {
		t.Fatalf("the failed member still listens: %v", err)
	}
	l.Close()
}

// TestEtcdPausedStop: a member whose etcd stops answering (paused with
// SIGSTOP) still stops within the bus's drain_timeout, cleanly: leaving
// etcd is given up at the deadline (the lease expires), and no goroutine of
// this package is left. (Stop waited for etcd forever.)
func TestEtcdPausedStop(t *testing.T) {
	t.Parallel()
	endpoint, etcd := startEtcd(t)
	n := loopbackNodes(t, 1)[0]
	conf := strings.Replace(etcdConf(fmt.Sprintf("paused-%d", time.Now().UnixNano()), n, endpoint),
		`drain_timeout = "10s"`, `drain_timeout = "2s"`, 1)
	p := startProc(t, "member", conf, nil)
	eventually(t, 30*time.Second, "the member to join", func() bool {
		st, ok := p.tryStatus(5 * time.Second)
		return ok && st.State == "joined"
	})
	if err := etcd.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer etcd.Signal(syscall.SIGCONT)
	start := time.Now()
	st := p.Stop(t, 15*time.Second) // fails unless it exits with 0
	took := time.Since(start)
	if took > 5*time.Second {
		t.Errorf("the member took %s to stop with drain_timeout 2s", took.Round(time.Millisecond))
	}
	var leaks []string
	if err := json.Unmarshal(st["leaks"], &leaks); err != nil {
		t.Fatal(err)
	}
	if len(leaks) > 0 {
		t.Errorf("goroutines of the cluster package left after the stop:\n%s", strings.Join(leaks, "\n\n"))
	}
	if !strings.Contains(p.Log.String(), "could not deregister") {
		t.Errorf("the abandoned deregistration was not logged")
	}
	t.Logf("stopped in %s", took.Round(time.Millisecond))
}

// TestEtcdMemberRaceFree: a member with etcd membership starts and joins
// in this test's process without a data race, under -race: remote.Start
// sets gRPC's global logger, which gRPC goroutines read, and the etcd
// client's goroutines must not run before it (they ran: the client was made
// first). The member is left running when the test's process ends: the
// etcd provider's Shutdown writes a flag its own goroutines read without
// synchronisation (protoactor), which -race reports on its own.
func TestEtcdMemberRaceFree(t *testing.T) {
	if !inOwnProcess(t) {
		return
	}
	endpoint, _ := startEtcd(t)
	b := parseBackbone(t, etcdConf(fmt.Sprintf("race-%d", time.Now().UnixNano()), loopbackNodes(t, 1)[0], endpoint))
	if err := b.Start(context.Background(), func(*messages.Envelope) {}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the member to join", func() bool { return b.Ready() == nil })
	time.Sleep(500 * time.Millisecond) // the client's goroutines at work
}
