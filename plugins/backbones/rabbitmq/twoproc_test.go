package rabbitmq_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins/backbones/rabbitmq"
	"github.com/threatbus/threatbus/tests/bustest"
)

// busProcess is a bus running as its own process (internal/testbus).
type busProcess struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	log   *bustest.SyncBuffer

	mu    sync.Mutex
	recv  map[string]int // payload → times received
	topic map[string]string
	n     int
	ready chan struct{}
	stats chan string
	done  chan struct{}
}

// buildTestBus builds internal/testbus once per test.
func buildTestBus(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testbus")
	cmd := exec.Command("go", "build", "-o", bin, "./internal/testbus")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./internal/testbus: %v\n%s", err, out)
	}
	return bin
}

func startBusProcess(t *testing.T, bin, name string, n names) *busProcess {
	t.Helper()
	conf := filepath.Join(t.TempDir(), name+".toml")
	doc := fmt.Sprintf(`[bus]
drain_timeout = "10s"

[backbones.rabbitmq]
url = %q
exchange_name = %q
reconnect_min = "20ms"
reconnect_max = "1s"

[backbones.rabbitmq.queue]
name_suffix = %q

[apps.lines]
`, brokerURL(), n.exchange, n.suffix)
	if err := os.WriteFile(conf, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &busProcess{name: name, cmd: exec.Command(bin, conf), log: &bustest.SyncBuffer{},
		recv: map[string]int{}, topic: map[string]string{}, ready: make(chan struct{}), stats: make(chan string, 1), done: make(chan struct{})}
	p.cmd.Stderr = p.log
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.read(stdout)
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.log.String())
		}
	})
	select {
	case <-p.ready:
	case <-p.done:
		t.Fatalf("%s exited:\n%s", name, p.log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start:\n%s", name, p.log.String())
	}
	return p
}

func (p *busProcess) read(r io.Reader) {
	defer close(p.done)
	lines := bufio.NewScanner(r)
	lines.Buffer(make([]byte, 1<<20), 1<<24)
	for lines.Scan() {
		kind, rest, _ := strings.Cut(lines.Text(), " ")
		switch kind {
		case "READY":
			close(p.ready)
		case "RECV":
			topic, b64, _ := strings.Cut(rest, " ")
			payload, _ := base64.StdEncoding.DecodeString(b64)
			p.mu.Lock()
			p.recv[string(payload)]++
			p.topic[string(payload)] = topic
			p.n++
			p.mu.Unlock()
		case "STATS":
			p.stats <- rest
		}
	}
	_ = p.cmd.Wait()
}

func (p *busProcess) publish(t *testing.T, payload []byte) {
	t.Helper()
	if _, err := fmt.Fprintln(p.stdin, base64.StdEncoding.EncodeToString(payload)); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
}

func (p *busProcess) received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// stop sends SIGTERM and returns the process's final counters.
func (p *busProcess) stop(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop", p.name)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited with %d:\n%s", p.name, code, p.log.String())
	}
	var st map[string]json.RawMessage
	select {
	case s := <-p.stats:
		if err := json.Unmarshal([]byte(s), &st); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("%s printed no stats", p.name)
	}
	return st
}

// TestTwoProcesses: two buses, separate processes with the real config
// loader and actor tree, on one exchange with their own queues. A message
// published into either reaches the subscribers of both, once.
func TestTwoProcesses(t *testing.T) {
	broker(t)
	bin := buildTestBus(t)
	shared := newNames(t)
	na := names{exchange: shared.exchange, suffix: shared.suffix + "-a"}
	nb := names{exchange: shared.exchange, suffix: shared.suffix + "-b"}
	t.Cleanup(func() { shared.remove(broker(t), na.queue(), nb.queue()) })
	a := startBusProcess(t, bin, "bus-a", na)
	b := startBusProcess(t, bin, "bus-b", nb)
	// Both queues bound and consumed before anything is published.
	for _, q := range []string{na.queue(), nb.queue()} {
		eventually(t, 15*time.Second, q+" to have its consumer", func() bool {
			info, err := broker(t).tryInspect(q)
			return err == nil && info.Consumers == 1
		})
	}

	const per = 100
	var sent [][]byte
	for i := 0; i < per; i++ {
		pa, pb := bustest.Indicator(t, i), bustest.Sighting(t, i)
		a.publish(t, pa)
		b.publish(t, pb)
		sent = append(sent, pa, pb)
	}
	for _, p := range []*busProcess{a, b} {
		eventually(t, 20*time.Second, fmt.Sprintf("%s to receive %d messages", p.name, len(sent)), func() bool { return p.received() >= len(sent) })
	}
	time.Sleep(300 * time.Millisecond) // nothing more may arrive
	for _, p := range []*busProcess{a, b} {
		p.mu.Lock()
		if p.n != len(sent) {
			t.Errorf("%s received %d messages, want %d", p.name, p.n, len(sent))
		}
		for _, s := range sent {
			var v struct{ Type string }
			_ = json.Unmarshal(s, &v)
			want, _ := messages.TopicFor(v.Type)
			if got := p.recv[string(s)]; got != 1 || p.topic[string(s)] != want {
				t.Errorf("%s received a message %d times on %q, want once on %q", p.name, got, p.topic[string(s)], want)
				break
			}
		}
		p.mu.Unlock()
	}
	for _, p := range []*busProcess{a, b} {
		st := p.stop(t)
		var bb rabbitmq.Stats
		if err := json.Unmarshal(st["backbone"], &bb); err != nil {
			t.Fatal(err)
		}
		if bb.Published != per || bb.Confirmed != per || bb.Delivered != 2*per || bb.Foreign != 0 {
			t.Errorf("%s backbone stats %+v", p.name, bb)
		}
	}
}
