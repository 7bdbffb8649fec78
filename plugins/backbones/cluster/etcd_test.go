package cluster_test

import (
	"fmt"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/threatbus/threatbus/tests/bustest"
	"github.com/threatbus/threatbus/tests/proctest"
)

// startEtcd runs Debian's etcd (etcd-server) on free loopback ports with a
// temporary data dir and returns its client endpoint. A missing binary
// fails the test: install it with scripts/setup.sh.
func startEtcd(t *testing.T) string {
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
				return endpoint
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
	endpoint := startEtcd(t)
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
