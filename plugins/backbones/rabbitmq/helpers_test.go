package rabbitmq_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins/backbones/rabbitmq"
)

// urlEnv names the broker the tests use. The tests fail, not skip, when it
// cannot be reached: `make test` starts RabbitMQ (scripts/setup.sh --test).
const urlEnv = "TBTEST_AMQP_URL"

func brokerURL() string {
	if u := os.Getenv(urlEnv); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// admin is a connection of the test's own, to inspect and clean up.
type admin struct {
	conn *amqp.Connection
	mu   sync.Mutex
}

var (
	adminOnce sync.Once
	adminConn *admin
	adminErr  error
)

// broker returns the shared admin connection and fails the test when
// RabbitMQ is unreachable.
func broker(t testing.TB) *admin {
	t.Helper()
	adminOnce.Do(func() {
		var c *amqp.Connection
		c, adminErr = amqp.DialConfig(brokerURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		adminConn = &admin{conn: c}
	})
	if adminErr != nil {
		t.Fatalf("RabbitMQ is not reachable at %s (set %s, or start it: rabbitmq-server -detached): %v", brokerURL(), urlEnv, adminErr)
	}
	return adminConn
}

// do runs f on a fresh channel of the admin connection (a failed operation
// closes its channel, so each gets its own).
func (a *admin) do(f func(ch *amqp.Channel) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch, err := a.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return f(ch)
}

func (a *admin) inspect(t testing.TB, queue string) amqp.Queue {
	t.Helper()
	q, err := a.tryInspect(queue)
	if err != nil {
		t.Fatalf("inspect queue %s: %v", queue, err)
	}
	return q
}

// tryInspect returns the queue's counts, or an error when it does not exist.
func (a *admin) tryInspect(queue string) (q amqp.Queue, err error) {
	err = a.do(func(ch *amqp.Channel) error {
		q, err = ch.QueueDeclarePassive(queue, false, false, false, false, nil)
		return err
	})
	return q, err
}

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// names are one test's exchange and queue suffix, removed when it ends.
type names struct {
	exchange string
	suffix   string
}

func (n names) queue() string { return "threatbus." + n.suffix }

func newNames(t testing.TB) names {
	t.Helper()
	a := broker(t)
	n := names{exchange: randomName("tbtest-"), suffix: randomName("test-")}
	t.Cleanup(func() { n.remove(a, n.queue()) })
	return n
}

// remove deletes queues and the exchange.
func (n names) remove(a *admin, queues ...string) {
	for _, q := range queues {
		_ = a.do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
	}
	_ = a.do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(n.exchange, false, false) })
}

// testLogger discards unless TBTEST_LOG is set.
func testLogger(w io.Writer) *slog.Logger {
	if w == nil {
		w = io.Discard
		if os.Getenv("TBTEST_LOG") != "" {
			w = os.Stderr
		}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newBackbone returns an initialized backbone on the test broker with the
// test's names; configure edits the defaults first.
func newBackbone(t testing.TB, n names, configure func(*rabbitmq.Backbone)) *rabbitmq.Backbone {
	t.Helper()
	b := rabbitmq.New()
	b.URL = config.Secret(brokerURL())
	b.ExchangeName = n.exchange
	b.Queue.NameSuffix = n.suffix
	b.ReconnectMin = config.Duration(20 * time.Millisecond)
	b.ReconnectMax = config.Duration(500 * time.Millisecond)
	if configure != nil {
		configure(b)
	}
	if err := b.Init(); err != nil {
		t.Fatalf("init: %v", err)
	}
	b.SetLogger(testLogger(nil))
	return b
}

// collector is a deliver func that keeps what it gets.
type collector struct {
	mu   sync.Mutex
	cond *sync.Cond
	envs []*messages.Envelope
}

func newCollector() *collector {
	c := &collector{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *collector) deliver(env *messages.Envelope) {
	c.mu.Lock()
	c.envs = append(c.envs, env)
	c.mu.Unlock()
	c.cond.Broadcast()
}

func (c *collector) all() []*messages.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*messages.Envelope{}, c.envs...)
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.envs)
}

// waitLen waits until n envelopes arrived.
func (c *collector) waitLen(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, c.cond.Broadcast)
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.envs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d deliveries, want %d within %s", len(c.envs), n, timeout)
		}
		c.cond.Wait()
	}
}

// envelope wraps payload as the bus would.
func envelope(t testing.TB, payload []byte, id string) *messages.Envelope {
	t.Helper()
	var v struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		t.Fatalf("payload: %v", err)
	}
	topic, err := messages.TopicFor(v.Type)
	if err != nil {
		t.Fatal(err)
	}
	return &messages.Envelope{Version: messages.EnvelopeVersion_ENVELOPE_VERSION_1, Id: id, Topic: topic, Type: v.Type, Payload: payload, Origin: "test"}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closeConnections closes, from the server side, every connection whose
// client properties (its connection_name) contain substr: only this test's,
// since other packages' tests may share the broker. It returns how many it
// closed.
func closeConnections(t testing.TB, substr string) int {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties").Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		pid, props, ok := strings.Cut(line, "\t")
		if !ok || !strings.Contains(props, substr) {
			continue
		}
		if out, err := exec.Command("rabbitmqctl", "-q", "close_connection", pid, "test: server-side close under load").CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl close_connection %s: %v\n%s", pid, err, out)
		}
		n++
	}
	return n
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// rabbitmqctl runs rabbitmqctl -q with args and returns its output.
func rabbitmqctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
