package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/threatbus/threatbus/plugins"
)

// link is one of the two connections (publisher, consumer) and what keeps it
// up: connect, serve until it breaks, wait, connect again.
type link[S any] struct {
	name  string
	state *atomic.Pointer[linkState]
	open  func(context.Context) (S, error)
	// serve runs a session until it breaks (an error) or the run ends (nil).
	serve func(*run, S) error
	conn  func(S) *amqp.Connection
	// lost runs after a session ended, with the error it ended with, before
	// the next is opened.
	lost func(error)
}

// keepUp runs l until r ends. first is the session Start opened, or nil and
// the error it failed with.
func keepUp[S comparable](b *Backbone, r *run, l link[S], first S, firstErr error) {
	log := b.logger().With("link", l.name, "url", b.cfg.display)
	var zero S
	s, err := first, firstErr
	// attempt numbers the next wait; failures counts failed attempts in a
	// row (a lost connection is not one).
	attempt, failures := 0, 0
	if s == zero {
		attempt, failures = 1, 1
		b.stats.failedAttempts.Add(1)
		if err == nil {
			err = errors.New("not connected")
		}
	}
	var lastKey string
	var lastWarn time.Time
	for {
		if s == zero {
			delay := backoff(attempt, b.ReconnectMin.D(), b.ReconnectMax.D(), jitter)
			l.state.Store(&linkState{err: err, attempt: failures, retry: time.Now().Add(delay)})
			b.out.notify()
			// An outage logs its first failure, then at most one line per
			// reconnect_max (more often only when the cause changes); the
			// rest goes to debug, so that a long outage does not flood the
			// log. A refused configuration is an error each time it changes.
			key := causeKey(err)
			var ce *plugins.ConfigError
			switch {
			case errors.As(err, &ce) && key != lastKey:
				log.Error("RabbitMQ refuses this configuration; retrying, but this needs fixing", "error", err, "attempt", attempt, "retry_in", delay)
				lastWarn = time.Now()
			case failures == 0:
				// Just lost: already logged.
			case failures == 1 || key != lastKey && time.Since(lastWarn) >= b.ReconnectMax.D() || time.Since(lastWarn) >= 10*b.ReconnectMax.D():
				log.Warn("cannot connect to RabbitMQ; retrying with backoff", "error", err, "failed_attempts", failures, "retry_in", delay)
				lastWarn = time.Now()
			default:
				log.Debug("cannot connect to RabbitMQ", "error", err, "failed_attempts", failures, "retry_in", delay)
			}
			lastKey = key
			t := time.NewTimer(delay)
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if s, err = l.open(r.ctx); err != nil {
				if r.ctx.Err() != nil {
					return
				}
				attempt++
				failures++
				b.stats.failedAttempts.Add(1)
				continue
			}
		}

		up := time.Now()
		r.setConn(l.name, l.conn(s))
		l.state.Store(&linkState{up: true})
		b.out.notify()
		b.stats.connects.Add(1)
		if failures > 0 {
			log.Info("connected to RabbitMQ", "queue", b.cfg.queue, "exchange", b.ExchangeName, "after_failed_attempts", failures)
		} else {
			log.Info("connected to RabbitMQ", "queue", b.cfg.queue, "exchange", b.ExchangeName)
		}
		lastKey, failures = "", 0

		err = l.serve(r, s)
		r.setConn(l.name, nil)
		_ = l.conn(s).CloseDeadline(time.Now().Add(time.Second))
		l.lost(err)
		if r.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("closed")
		}
		b.stats.disconnects.Add(1)
		// A connection that held for a while starts the backoff afresh; one
		// that keeps breaking right after connecting backs off further.
		if time.Since(up) >= b.ReconnectMax.D() {
			attempt = 0
		}
		attempt++
		log.Warn("lost the connection to RabbitMQ; reconnecting", "error", err, "was_up", time.Since(up).Round(time.Millisecond))
		s = zero
	}
}

// publishLoop keeps the publisher connected and sends what the outbox holds.
func (b *Backbone) publishLoop(r *run, first *pubSession, firstErr error) {
	keepUp(b, r, link[*pubSession]{
		name:  "publisher",
		state: &b.pub,
		open:  b.openPublisher,
		serve: b.servePublisher,
		conn:  func(s *pubSession) *amqp.Connection { return s.conn },
		lost: func(err error) {
			b.dropTooLarge(err)
			// Whatever was sent and not confirmed goes out again, in order,
			// on the next connection: at least once.
			if n := b.out.resend(); n > 0 {
				b.logger().Info("will resend messages RabbitMQ did not confirm", "count", n)
			}
		},
	}, first, firstErr)
}

// consumeLoop keeps the consumer connected and hands deliveries to the bus.
func (b *Backbone) consumeLoop(r *run, first *consSession, firstErr error) {
	keepUp(b, r, link[*consSession]{
		name:  "consumer",
		state: &b.cons,
		open:  b.openConsumer,
		serve: b.serveConsumer,
		conn:  func(s *consSession) *amqp.Connection { return s.conn },
		lost:  func(error) {},
	}, first, firstErr)
}

// servePublisher sends the outbox's messages in order, at most confirmWindow
// unconfirmed at a time, until the session breaks or the run ends.
func (b *Backbone) servePublisher(r *run, s *pubSession) (err error) {
	// The confirms reader closes confirmDone when it ends, after setting
	// confirmErr: the loop below and the deferred wait may both see that,
	// in either order. Without confirms there is no reader, and the nil
	// channel never fires.
	var (
		confirmDone chan struct{}
		confirmErr  error
	)
	window := 1
	if s.confirms != nil {
		window = confirmWindow
		confirmDone = make(chan struct{})
		go func() { confirmErr = b.readConfirms(s); close(confirmDone) }()
	}
	defer func() {
		// The confirms end when the channel closes; only then may the
		// outbox be rewound for the next session.
		_ = s.conn.CloseDeadline(time.Now().Add(time.Second))
		if confirmDone != nil {
			<-confirmDone
		}
		// When RabbitMQ closed the channel, its reason says why the session
		// ended better than the end of the confirms or a failed publish
		// that followed from it. The library hands it over before it ends
		// the confirms.
		select {
		case e := <-s.closed:
			if e != nil {
				err = e
			}
		default:
		}
	}()
	for {
		var m *outMsg
		ok := false
		if !b.Queue.Exclusive || b.cons.Load().up {
			m, ok = b.out.next(window)
		}
		if !ok {
			select {
			case <-b.out.kick:
			case <-r.ctx.Done():
				return nil
			case e := <-s.closed:
				return closeErr(e)
			case <-confirmDone:
				return confirmErr
			case bl := <-s.blocked:
				b.setBlocked(bl)
			}
			continue
		}
		if r.ctx.Err() != nil {
			return nil
		}
		if m.sends > 0 {
			b.stats.resent.Add(1)
		}
		m.sends++
		if err := s.ch.Publish(b.ExchangeName, "", false, false, m.pub); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		b.stats.sent.Add(1)
		if s.confirms == nil {
			b.out.confirm(true, time.Now())
		}
	}
}

// tooLarge is RabbitMQ's reason for closing a channel on a message above
// its max_message_size (406 PRECONDITION_FAILED); "configured" is missing
// when the limit is the largest possible.
var tooLarge = regexp.MustCompile(`message size (\d+) is larger than (?:configured )?max size (\d+)`)

// dropTooLarge handles RabbitMQ's refusal of a message above its
// max_message_size, which closed the publisher's channel: sent again, it
// would be refused again on every connection, forever, and everything
// behind it with it. Instead the buffered messages above the broker's limit
// are dropped (counted, and logged once per refusal), and Publish refuses
// such messages from now on.
func (b *Backbone) dropTooLarge(err error) {
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		return
	}
	m := tooLarge.FindStringSubmatch(ae.Reason)
	if m == nil {
		return
	}
	size, _ := strconv.ParseInt(m[1], 10, 64)
	limit, perr := strconv.ParseInt(m[2], 10, 64)
	if perr != nil || limit <= 0 {
		return
	}
	b.brokerMax.Store(limit)
	sizes := b.out.dropLarger(limit)
	// Without confirms the refused message has left the buffer already;
	// it is lost all the same.
	n := max(len(sizes), 1)
	b.stats.drop(causeTooLarge, uint64(n))
	if len(sizes) > 10 {
		sizes = sizes[:10]
	}
	b.logger().Error("RabbitMQ refused a message larger than its max_message_size; dropping every buffered message above that size instead of sending it again, and refusing such messages until the backbone restarts (set max_message_size to at most the broker's)",
		"size", size, "broker_max_message_size", limit, "max_message_size", b.MaxMessageSize, "dropped", n, "dropped_sizes", sizes)
}

// readConfirms settles the outbox's messages as RabbitMQ confirms them. The
// library hands confirms over in delivery-tag order, which is send order.
func (b *Backbone) readConfirms(s *pubSession) error {
	var want uint64 = 1
	var err error
	for c := range s.confirms {
		if err != nil {
			continue // drain until the channel closes
		}
		if c.DeliveryTag != want {
			// A lost confirm would pair every later one with the wrong
			// message: give the channel up and resend what is unconfirmed.
			err = fmt.Errorf("publisher confirm for tag %d, expected %d", c.DeliveryTag, want)
			_ = s.conn.CloseDeadline(time.Now().Add(time.Second))
			continue
		}
		want++
		b.out.confirm(c.Ack, time.Now())
		if c.Ack {
			b.stats.confirmed.Add(1)
		} else {
			b.stats.nacked.Add(1)
		}
	}
	return err
}

func (b *Backbone) setBlocked(bl amqp.Blocking) {
	cur := b.pub.Load()
	if cur == nil || !cur.up {
		return
	}
	next := *cur
	next.blocked, next.reason = bl.Active, bl.Reason
	b.pub.Store(&next)
	b.out.notify()
	if bl.Active {
		b.logger().Warn("RabbitMQ blocks publishing (resource alarm); buffering", "reason", bl.Reason)
	} else {
		b.logger().Info("RabbitMQ unblocked publishing")
	}
}

// serveConsumer hands deliveries to the bus and acknowledges them once
// handed on, in batches; it rejects what cannot be decoded.
func (b *Backbone) serveConsumer(r *run, s *consSession) error {
	batch := b.Prefetch / 2
	if b.Prefetch == 0 {
		batch = 256
	}
	batch = max(batch, 1)
	var last uint64
	pending := 0
	flush := func() error {
		if pending == 0 {
			return nil
		}
		pending = 0
		return s.ch.Ack(last, true)
	}
	for {
		var d amqp.Delivery
		var ok bool
		select {
		case d, ok = <-s.deliveries:
		default:
			// Nothing waiting: acknowledge what was handed on, then block.
			if err := flush(); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
			select {
			case d, ok = <-s.deliveries:
			case <-r.ctx.Done():
				return nil
			}
		}
		if !ok {
			select {
			case e := <-s.closed:
				return closeErr(e)
			case <-time.After(100 * time.Millisecond):
			}
			return errors.New("RabbitMQ cancelled the consumer (was the queue deleted?)")
		}
		if r.ctx.Err() != nil {
			// Stopping: not handed on, so not acknowledged; RabbitMQ
			// requeues it when the channel closes.
			return flush()
		}
		env, cause, err := decode(d.Body, d.MessageId, d.Headers, b.ids.next)
		if err != nil {
			b.stats.reject(cause)
			if b.rejects.first(cause) {
				b.logger().Warn("rejecting a message that cannot be routed (logged once per cause; see the rejected counters)",
					"cause", cause, "error", err, "queue", b.cfg.queue, "dead_letter_exchange", b.Queue.DeadLetterExchange)
			}
			if err := d.Reject(false); err != nil {
				return fmt.Errorf("reject: %w", err)
			}
			continue
		}
		if d.MessageId == "" {
			b.stats.foreign.Add(1)
		}
		if d.Redelivered {
			b.stats.redelivered.Add(1)
		}
		r.deliver(env)
		b.stats.delivered.Add(1)
		if d.MessageId != "" {
			b.out.returned(env.Id)
		}
		last = d.DeliveryTag
		pending++
		if pending >= batch {
			if err := flush(); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
}

// causeKey is err's message without its numbers (ports, attempt counts), so
// that the same failure on another socket counts as the same cause.
func causeKey(err error) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, err.Error())
}

func closeErr(e *amqp.Error) error {
	if e == nil {
		return errors.New("closed")
	}
	return e
}
