// Package rabbitmq is the RabbitMQ backbone: several bus hosts share one
// stream of messages through a fanout exchange, each host reading it from
// its own queue. It is wire-compatible with the original Threat Bus
// RabbitMQ backbone (../shared/specs/rabbitmq.md): the same exchange, queue
// names, queue arguments and JSON bodies, so a Go bus and a Python bus on
// one exchange see each other's messages.
//
// Unlike the original it publishes with confirms (persistently when its
// queue is durable) and retries what was not confirmed after a reconnect,
// acknowledges a delivery only once it has been handed to the bus, rejects
// bodies it cannot route instead of losing them silently, and reconnects
// with capped, jittered exponential backoff. Delivery is at least once; the
// router removes the duplicates by envelope id, which travels as the AMQP
// message-id property.
//
// It must not change the bodies (they are the objects' JSON, byte for byte),
// must not require anything of a message beyond its JSON "type" (the
// original sends no properties), and never blocks the bus for long: Publish
// waits at most publish_timeout.
package rabbitmq

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

//go:embed sample.conf
var sampleConfig string

// Name is the plugin's registry key and config table name.
const Name = "rabbitmq"

func init() {
	plugins.AddBackbone(Name, func() plugins.Backbone { return New() })
}

// New returns a backbone with the default configuration.
func New() *Backbone { return newDefaults() }

// Backbone is the RabbitMQ backbone. Its exported fields are the
// [backbones.rabbitmq] table; see sample.conf and README.md.
type Backbone struct {
	// URL is an amqp:// or amqps:// URL, an alternative to Host, Port,
	// Username, Password and VHost.
	URL      config.Secret `toml:"url"`
	Host     string        `toml:"host"`
	Port     int           `toml:"port"`
	Username string        `toml:"username"`
	Password config.Secret `toml:"password"`
	VHost    string        `toml:"vhost"`
	// ExchangeName is the fanout exchange every bus host shares.
	ExchangeName string `toml:"exchange_name"`
	Queue        Queue  `toml:"queue"`
	TLS          TLS    `toml:"tls"`

	// Prefetch is how many unacknowledged deliveries RabbitMQ may push to
	// this host (basic.qos); 0 is unlimited, as in the original.
	Prefetch int `toml:"prefetch"`
	// Confirm publishes with publisher confirms: a message is dropped from
	// the buffer only once RabbitMQ has taken responsibility for it, and is
	// sent again after a reconnect otherwise.
	Confirm bool `toml:"confirm"`
	// Persistent publishes with delivery_mode 2 when Queue.Durable is set,
	// so that messages survive a broker restart.
	Persistent bool `toml:"persistent"`
	// Buffer is how many messages this host holds that RabbitMQ has not
	// confirmed yet (all of them while it is disconnected). Beyond it
	// Publish refuses, and the bus counts the message as dropped.
	Buffer int `toml:"buffer"`
	// MaxInFlight is how many of this host's own messages may be on their
	// way through RabbitMQ (published, not yet back from this host's queue)
	// when Publish returns. 0 makes each Publish wait for its message to
	// come back: one round trip per message. A graceful stop of the bus
	// delivers everything published before it either way (Flush).
	MaxInFlight int `toml:"max_in_flight"`
	// PublishTimeout bounds how long Publish waits, while connected, for room
	// in the buffer or for MaxInFlight.
	PublishTimeout config.Duration `toml:"publish_timeout"`
	// MaxMessageSize is the largest body, in bytes, Publish accepts. It must
	// not exceed the broker's max_message_size: RabbitMQ refuses a larger
	// message by closing the publisher's channel.
	MaxMessageSize int `toml:"max_message_size"`

	// Heartbeat is the AMQP heartbeat interval we propose; the lower of
	// ours and the server's applies.
	Heartbeat config.Duration `toml:"heartbeat"`
	// DialTimeout bounds connecting, TLS and the AMQP handshake.
	DialTimeout config.Duration `toml:"dial_timeout"`
	// ReconnectMin and ReconnectMax bound the delay between connection
	// attempts: it doubles per failed attempt, with jitter.
	ReconnectMin config.Duration `toml:"reconnect_min"`
	ReconnectMax config.Duration `toml:"reconnect_max"`

	cfg   *settings
	log   atomic.Pointer[slog.Logger]
	out   *outbox
	stats counters
	ids   idGen

	mu  sync.Mutex // guards run
	run *run

	pub, cons atomic.Pointer[linkState]
	rejects   onceLog
	// brokerMax is RabbitMQ's max_message_size as its refusal of a larger
	// message told it (see dropTooLarge); 0 while unknown.
	brokerMax atomic.Int64
}

var (
	_ plugins.Backbone    = (*Backbone)(nil)
	_ plugins.Checker     = (*Backbone)(nil)
	_ plugins.Flusher     = (*Backbone)(nil)
	_ plugins.LogReceiver = (*Backbone)(nil)
	_ plugins.Reporter    = (*Backbone)(nil)
)

// run is one Start…Stop of the backbone.
type run struct {
	ctx     context.Context
	cancel  context.CancelFunc
	deliver func(*messages.Envelope)
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns map[string]*amqp.Connection // the live connection of each link
}

func (r *run) setConn(link string, c *amqp.Connection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c == nil {
		delete(r.conns, link)
	} else {
		r.conns[link] = c
	}
}

// closeConns closes whatever is still connected, so that a goroutine blocked
// writing to a broker that stopped reading (a resource alarm) returns.
func (r *run) closeConns() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		_ = c.CloseDeadline(time.Now().Add(time.Second))
	}
}

// SampleConfig implements plugins.Plugin.
func (*Backbone) SampleConfig() string { return sampleConfig }

// SetLogger implements plugins.LogReceiver: the bus passes its logger
// before Start. Until it is called the plugin logs to slog.Default().
func (b *Backbone) SetLogger(l *slog.Logger) { b.log.Store(l) }

func (b *Backbone) logger() *slog.Logger {
	if l := b.log.Load(); l != nil {
		return l
	}
	l := slog.Default().With("plugin", Name)
	b.log.CompareAndSwap(nil, l)
	return b.log.Load()
}

// QueueName is the name of this host's queue, known after Init.
func (b *Backbone) QueueName() string {
	if b.cfg == nil {
		return ""
	}
	return b.cfg.queue
}

// Errors of Publish.
var (
	errStopped = errors.New("rabbitmq: backbone is not started")
	errFull    = errors.New("rabbitmq: buffer full: RabbitMQ has not confirmed the last buffer messages (raise buffer, or see why the broker is slow or unreachable)")
)

// Start implements plugins.Backbone. It connects once before returning, so
// that a configuration RabbitMQ refuses (credentials, a mismatching exchange
// or queue) is reported as a *plugins.ConfigError. When the broker cannot be
// reached it returns nil anyway and keeps trying in the background; Publish
// buffers meanwhile and Ready says why the backbone is not connected.
func (b *Backbone) Start(ctx context.Context, deliver func(*messages.Envelope)) error {
	if b.cfg == nil {
		if err := b.Init(); err != nil {
			return &plugins.ConfigError{Err: fmt.Errorf("rabbitmq: %w", err)}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.run != nil {
		return errors.New("rabbitmq: already started")
	}
	b.ids.init()
	b.brokerMax.Store(0) // the broker's limit may have been raised meanwhile
	down := &linkState{err: errors.New("connecting")}
	b.pub.Store(down)
	b.cons.Store(down)

	runCtx, cancel := context.WithCancel(context.Background())
	r := &run{ctx: runCtx, cancel: cancel, deliver: deliver, conns: map[string]*amqp.Connection{}}

	// The first attempt runs here, within dial_timeout, to tell a
	// configuration error (stop: restarting cannot fix it) from a broker
	// that is down (keep trying).
	first, cancelFirst := context.WithTimeout(ctx, b.DialTimeout.D())
	defer cancelFirst()
	cs, cerr := b.openConsumer(first)
	var ps *pubSession
	var perr error
	if ce := (*plugins.ConfigError)(nil); !errors.As(cerr, &ce) {
		ps, perr = b.openPublisher(first)
	}
	for _, err := range []error{cerr, perr} {
		var ce *plugins.ConfigError
		if errors.As(err, &ce) {
			if cs != nil {
				cs.close()
			}
			if ps != nil {
				ps.close()
			}
			cancel()
			err = &plugins.ConfigError{Err: fmt.Errorf("rabbitmq %s: %w", b.cfg.display, ce.Err)}
			down := &linkState{err: ce.Err}
			b.pub.Store(down)
			b.cons.Store(down)
			return err
		}
	}
	b.out.reopen()
	b.run = r
	r.wg.Add(2)
	go func() { defer r.wg.Done(); b.consumeLoop(r, cs, cerr) }()
	go func() { defer r.wg.Done(); b.publishLoop(r, ps, perr) }()
	return nil
}

// Publish implements plugins.Backbone. It hands env to the publisher and
// returns once it is buffered and, while connected, once at most
// max_in_flight of this host's messages are still on their way through
// RabbitMQ; it waits at most publish_timeout.
func (b *Backbone) Publish(_ context.Context, env *messages.Envelope) error {
	if b.out == nil || b.cfg == nil {
		return errStopped
	}
	if len(env.Id) == 0 || len(env.Id) > 255 {
		return fmt.Errorf("rabbitmq: envelope id of %d bytes does not fit the message-id property (1..255)", len(env.Id))
	}
	// RabbitMQ would close the channel on a larger message; refused here,
	// the bus counts the drop and nothing else is held up.
	if broker := b.brokerMax.Load(); broker > 0 && broker < int64(b.MaxMessageSize) && int64(len(env.Payload)) > broker {
		return fmt.Errorf("rabbitmq: message of %d bytes exceeds RabbitMQ's max_message_size (%d, as it said when it refused a larger message; max_message_size here is %d)", len(env.Payload), broker, b.MaxMessageSize)
	}
	if len(env.Payload) > b.MaxMessageSize {
		return fmt.Errorf("rabbitmq: message of %d bytes exceeds max_message_size (%d)", len(env.Payload), b.MaxMessageSize)
	}
	m := &outMsg{pub: b.publishing(env), own: &ownMsg{id: env.Id}}
	deadline := time.Now().Add(b.PublishTimeout.D())
	if err := b.out.accept(m, b.Buffer, deadline, b.connected); err != nil {
		b.stats.refused.Add(1)
		return err
	}
	b.stats.published.Add(1)
	if !b.out.waitInFlight(b.MaxInFlight, deadline, b.PublishTimeout.D(), b.connected) {
		b.stats.slow.Add(1)
	}
	return nil
}

// Stop implements plugins.Backbone. It refuses further publishes, waits
// (within ctx) until RabbitMQ has confirmed every buffered message and this
// host's own messages have come back and been handed to the bus, then
// disconnects. Deliveries not yet handed on stay in the queue for the next
// start. What did not make it is reported in the error and kept in the
// buffer: a restart sends it.
func (b *Backbone) Stop(ctx context.Context) error {
	b.mu.Lock()
	r := b.run
	b.run = nil
	b.mu.Unlock()
	if r == nil {
		return nil
	}
	b.out.close()
	unconfirmed, unreturned := b.out.waitEmpty(ctx, b.PublishTimeout.D())
	r.cancel()
	// The links close their connections themselves, after the last acks;
	// one stuck writing to a broker that stopped reading is cut off.
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		r.closeConns()
		<-done
	}
	b.out.forget()
	stopped := &linkState{err: errors.New("stopped")}
	b.pub.Store(stopped)
	b.cons.Store(stopped)
	if unconfirmed > 0 || unreturned > 0 {
		return fmt.Errorf("rabbitmq: stopped with %d messages not confirmed by RabbitMQ (kept for a restart) and %d confirmed messages of this host not back from its queue", unconfirmed, unreturned)
	}
	return nil
}

// Flush waits until every message Publish accepted before the call has been
// confirmed by RabbitMQ and, for this host's own messages, has come back and
// been handed to the bus, or until ctx ends. It implements plugins.Flusher:
// the bus's drain calls it, so that a graceful stop delivers what was
// published before it although publishes pipeline (max_in_flight > 0).
func (b *Backbone) Flush(ctx context.Context) error {
	if b.out == nil {
		return nil
	}
	unconfirmed, unreturned := b.out.waitEmpty(ctx, b.PublishTimeout.D())
	if unconfirmed > 0 || unreturned > 0 {
		return fmt.Errorf("rabbitmq: flush: %d messages not confirmed, %d confirmed messages of this host not back: %w", unconfirmed, unreturned, context.Cause(ctx))
	}
	return nil
}

// Ready implements plugins.Checker: nil when both connections are up.
func (b *Backbone) Ready() error {
	p, c := b.pub.Load(), b.cons.Load()
	if p == nil || c == nil || b.cfg == nil {
		return errStopped
	}
	var why []string
	if err := c.ready("consumer"); err != nil {
		why = append(why, err.Error())
	}
	if err := p.ready("publisher"); err != nil && p != c {
		why = append(why, err.Error())
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("rabbitmq %s: %s", b.cfg.display, strings.Join(why, "; "))
}

// connected reports whether both links are up: only then is waiting for a
// message to come back worth it.
func (b *Backbone) connected() bool {
	p, c := b.pub.Load(), b.cons.Load()
	return p != nil && c != nil && p.up && c.up && !p.blocked
}
