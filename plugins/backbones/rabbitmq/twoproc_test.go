package rabbitmq_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins/backbones/rabbitmq"
	"github.com/threatbus/threatbus/tests/bustest"
	"github.com/threatbus/threatbus/tests/proctest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup()
	os.Exit(code)
}

// busProcess is a bus running as its own process (internal/testbus).
type busProcess struct {
	*proctest.Proc
	name string

	mu    sync.Mutex
	recv  map[string]int // payload → times received
	topic map[string]string
	n     int
}

func startBusProcess(t *testing.T, name string, n names) *busProcess {
	t.Helper()
	conf := fmt.Sprintf(`[bus]
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
	p := &busProcess{name: name, recv: map[string]int{}, topic: map[string]string{}}
	p.Proc = proctest.Start(t, name, proctest.Build(t, "./internal/testbus"), conf, proctest.Options{}, func(kind, rest string) {
		if kind != "RECV" {
			return
		}
		topic, b64, _ := strings.Cut(rest, " ")
		payload, _ := base64.StdEncoding.DecodeString(b64)
		p.mu.Lock()
		p.recv[string(payload)]++
		p.topic[string(payload)] = topic
		p.n++
		p.mu.Unlock()
	})
	return p
}

func (p *busProcess) publish(t *testing.T, payload []byte) {
	t.Helper()
	p.Send(t, base64.StdEncoding.EncodeToString(payload))
}

func (p *busProcess) received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// TestTwoProcesses: two buses, separate processes with the real config
// loader and actor tree, on one exchange with their own queues. A message
// published into either reaches the subscribers of both, once.
func TestTwoProcesses(t *testing.T) {
	broker(t)
	shared := newNames(t)
	na := names{exchange: shared.exchange, suffix: shared.suffix + "-a"}
	nb := names{exchange: shared.exchange, suffix: shared.suffix + "-b"}
	t.Cleanup(func() { shared.remove(broker(t), na.queue(), nb.queue()) })
	a := startBusProcess(t, "bus-a", na)
	b := startBusProcess(t, "bus-b", nb)
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
		st := p.Stop(t, 30*time.Second)
		var bb rabbitmq.Stats
		if err := json.Unmarshal(st["backbone"], &bb); err != nil {
			t.Fatal(err)
		}
		if bb.Published != per || bb.Confirmed != per || bb.Delivered != 2*per || bb.Foreign != 0 {
			t.Errorf("%s backbone stats %+v", p.name, bb)
		}
	}
}
