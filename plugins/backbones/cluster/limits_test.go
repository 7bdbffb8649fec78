package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/tests/bustest"
)

// TestLargeMessages: 600 indicators of 20 KiB each, published at once, so
// that a batch of 256 of them (5 MiB) would exceed gRPC's default receive
// limit (4 MiB), all reach the other member, acknowledged and not sent
// again: a Forward is bounded by bytes as well as by count. (The receiver
// refused such a batch as a whole; the sender saw only an ack timeout and
// sent the same batch again, forever, counting nothing as dropped.)
func TestLargeMessages(t *testing.T) {
	t.Parallel()
	nodes := loopbackNodes(t, 2)
	name := fmt.Sprintf("large-%d", time.Now().UnixNano())
	env := []string{"TESTBUS_COUNT_ONLY=1"}
	a := startProc(t, "member-a", automanagedConf(name, nodes[0], nodes), env)
	b := startProc(t, "member-b", automanagedConf(name, nodes[1], nodes), env)
	waitFormed(t, 40*time.Second, a, b)

	const n = 600
	a.Send(t, fmt.Sprintf("!flood %d %d", n, 20<<10))
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := b.delivered(5 * time.Second)
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			st, _ := a.tryStatus(5 * time.Second)
			t.Fatalf("member-b received %d of %d large messages within 30s; member-a's peers: %+v", got, n, st.Peers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if got, _ := b.delivered(5 * time.Second); got != n {
		t.Errorf("member-b received %d, want %d", got, n)
	}
	st, ok := a.tryStatus(5 * time.Second)
	if !ok || len(st.Peers) != 1 {
		t.Fatalf("member-a status: %v %+v", ok, st)
	}
	if p := st.Peers[0]; p.Acked != n || p.Queued != 0 || len(p.Dropped) != 0 || len(st.Dropped) != 0 {
		t.Errorf("member-a → member-b: acked %d of %d, queued %d, dropped %v (totals %v)", p.Acked, n, p.Queued, p.Dropped, st.Dropped)
	}
	t.Logf("member-a → member-b: forwarded %d, retried %d", st.Peers[0].Forwarded, st.Peers[0].Retried)
}

// TestStopWithinDeadline: Stop returns within its deadline while a
// forward waits for an ack that does not come (the peer is paused, and
// ack_timeout is 10s), and counts and reports what was not acknowledged.
// (The sender waited out ack_timeout, and Stop with it.) The member under
// test runs in this test's process.
func TestStopWithinDeadline(t *testing.T) {
	if !inOwnProcess(t) {
		return
	}
	nodes := loopbackNodes(t, 2)
	name := fmt.Sprintf("stop-%d", time.Now().UnixNano())
	peer := startProc(t, "member-b", automanagedConf(name, nodes[1], nodes), nil)
	conf := strings.Replace(automanagedConf(name, nodes[0], nodes), `ack_timeout = "1s"`, `ack_timeout = "10s"`, 1)
	a := parseBackbone(t, conf)
	if err := a.Start(context.Background(), func(*messages.Envelope) {}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 40*time.Second, "the cluster to form", func() bool { return formed(a.Status(), 2) })

	peer.Signal(t, syscall.SIGSTOP)
	env := &messages.Envelope{Version: messages.EnvelopeVersion_ENVELOPE_VERSION_1, Id: uuid.NewString(),
		Topic: messages.TopicIndicator, Type: messages.TypeIndicator, Payload: bustest.Indicator(t, 1)}
	if err := a.Publish(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the forward to be sent", func() bool {
		st := a.Status()
		return len(st.Peers) == 1 && st.Peers[0].Forwarded == 1
	})

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := a.Stop(ctx)
	took := time.Since(start)
	if took > time.Second {
		t.Errorf("Stop with a 500ms deadline took %s", took.Round(time.Millisecond))
	}
	if err == nil || !strings.Contains(err.Error(), "1 messages not acknowledged") {
		t.Errorf("Stop: %v, want the unacknowledged message reported", err)
	}
	if st := a.Status(); st.State != "stopped" || st.Dropped["shutdown"] != 1 {
		t.Errorf("after Stop: state %s, dropped %v, want stopped and 1 shutdown", st.State, st.Dropped)
	}
	t.Logf("Stop took %s: %v", took.Round(time.Millisecond), err)
}
