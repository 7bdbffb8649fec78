package zeek

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

const (
	// subscribeTimeout bounds a bus subscribe; the script asks again.
	subscribeTimeout = 10 * time.Second
	// closeTimeout bounds ending one bus subscription.
	closeTimeout = 5 * time.Second
	// stoppingCloseTimeout bounds it when the app is stopping. When the
	// whole bus stops, the subscriptions are being stopped too and Close
	// may get no answer at all; waiting longer would only hold up the stop.
	stoppingCloseTimeout = time.Second
	// closeGrace is how long a stopping session waits for Zeek to answer
	// its close frame.
	closeGrace = time.Second
)

var errSessionClosed = errors.New("zeek: the connection to Zeek is closed")

// session is one WebSocket connection to a Zeek and what the Zeek
// subscribed to over it. Its reader goroutine handles everything Zeek
// sends, one message at a time; one writer goroutine owns the writing, so
// the subscriptions' sinks and the reader hand it frames.
type session struct {
	e    *endpoint
	conn *websocket.Conn
	bus  plugins.Bus
	log  *slog.Logger

	ctx    context.Context // ends with the session
	cancel context.CancelFunc
	out    chan outFrame

	failOnce sync.Once
	failErr  error

	mu      sync.Mutex
	subs    map[string]*zsub // by p2p topic
	byTopic map[string]*zsub // by requested topic

	// Zeek's errors do not say what they are about: the last event sent is
	// the best hint. Each error is logged at warning level once per session.
	lastSent  atomic.Pointer[string]
	errLogged map[string]bool // reader only
}

type outFrame struct {
	b    []byte
	what string // event name, for error context
	done chan error
}

// zsub is one subscription of the Zeek.
type zsub struct {
	topic, p2p string
	snapshot   time.Duration
	sub        plugins.Subscription
	ready      chan struct{} // closed once the acknowledgement is written
	sent       atomic.Uint64
}

func newSession(e *endpoint, conn *websocket.Conn, bus plugins.Bus, log *slog.Logger) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		e: e, conn: conn, bus: bus, log: log,
		ctx: ctx, cancel: cancel,
		out:       make(chan outFrame),
		subs:      map[string]*zsub{},
		byTopic:   map[string]*zsub{},
		errLogged: map[string]bool{},
	}
}

// run serves the connection until it fails or ctx ends, then ends every
// subscription made over it. It returns why the connection ended.
func (s *session) run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, f := range []func(){s.writer, s.pinger, func() { s.watch(ctx) }} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("zeek: session goroutine panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					s.fail(fmt.Errorf("panic: %v", r))
				}
			}()
			f()
		}()
	}
	err := s.read()
	s.fail(err)
	_ = s.conn.CloseNow()
	wg.Wait()
	s.closeAll(ctx.Err() != nil)
	return s.failErr
}

// fail ends the session; the first cause is kept.
func (s *session) fail(err error) {
	s.failOnce.Do(func() {
		if err == nil {
			err = errSessionClosed
		}
		s.failErr = err
		s.cancel()
	})
}

// watch closes the connection politely when the app stops: a close frame,
// a moment for Zeek's answer, then the hard way.
func (s *session) watch(ctx context.Context) {
	select {
	case <-s.ctx.Done():
		return
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.conn.Close(websocket.StatusGoingAway, "threatbus is stopping")
	}()
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	s.fail(errors.New("stopped"))
	<-done
}

func (s *session) read() error {
	for {
		typ, b, err := s.conn.Read(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil {
				return s.failErr
			}
			if cs := websocket.CloseStatus(err); cs != -1 {
				var ce websocket.CloseError
				errors.As(err, &ce)
				return fmt.Errorf("Zeek closed the connection: %d %s", cs, ce.Reason)
			}
			return fmt.Errorf("read: %w", err)
		}
		if typ != websocket.MessageText {
			s.reject(rejBinary, "zeek: ignoring a binary message", "bytes", len(b))
			continue
		}
		s.handle(b)
	}
}

func (s *session) reject(cause, msg string, args ...any) {
	s.e.c.rejected.add(cause)
	s.log.Debug(msg, args...)
}

// handle acts on one message; a panic loses only that message.
func (s *session) handle(b []byte) {
	defer func() {
		if r := recover(); r != nil {
			s.e.c.rejected.add(rejPanic)
			s.log.Error("zeek: handling a message panicked", "panic", fmt.Sprint(r), "message", truncate(b, 512), "stack", string(debug.Stack()))
		}
	}()
	m, err := bj.Decode(b)
	if err != nil {
		if s.e.c.rejected.add(rejMalformed) == 1 {
			s.log.Warn("zeek: ignoring a malformed message (further ones are logged at debug level)", "error", err, "message", truncate(b, 512))
		} else {
			s.log.Debug("zeek: ignoring a malformed message", "error", err, "message", truncate(b, 512))
		}
		return
	}
	switch m := m.(type) {
	case *bj.ErrorMessage:
		s.serverError(m)
	case *bj.Ack:
		s.e.c.ignored.add("ack")
		s.log.Debug("zeek: ignoring a second ack", "zeek_endpoint", m.Endpoint)
	case *bj.DataMessage:
		ev, err := bj.EventOf(m.Data)
		if err != nil {
			s.reject(rejNotEvent, "zeek: ignoring a data message that is not an event", "topic", m.Topic, "error", err)
			return
		}
		switch s.localName(ev.Name) {
		case "subscribe":
			s.subscribe(ev)
		case "unsubscribe":
			s.unsubscribe(ev)
		case "sighting":
			s.sighting(ev)
		default:
			// Our own intel and acknowledgements, when Zeek echoes them, and
			// other modules' events on our topics.
			s.e.c.ignored.add(ev.Name)
			s.log.Debug("zeek: ignoring an event", "event", ev.Name, "topic", m.Topic)
		}
	}
}

// localName strips the module namespace; "" for events of other modules.
func (s *session) localName(name string) string {
	ns := s.e.app.ModuleNamespace
	if ns == "" {
		if strings.Contains(name, "::") {
			return ""
		}
		return name
	}
	local, ok := strings.CutPrefix(name, ns+"::")
	if !ok {
		return ""
	}
	return local
}

func (s *session) eventName(local string) string {
	if ns := s.e.app.ModuleNamespace; ns != "" {
		return ns + "::" + local
	}
	return local
}

// serverError counts an error message from Zeek and logs it with what we
// last sent. Zeek keeps the connection, and so do we.
func (s *session) serverError(m *bj.ErrorMessage) {
	s.e.c.serverErrors.add(m.Code)
	last := ""
	if p := s.lastSent.Load(); p != nil {
		last = *p
	}
	key := m.Code + "\x00" + m.Context
	args := []any{"code", m.Code, "context", m.Context, "last_sent", last}
	if !s.errLogged[key] {
		s.errLogged[key] = true
		s.log.Warn("zeek: Zeek reports an error (repeats are logged at debug level); check that threatbus.zeek is loaded and matches this bus", args...)
		return
	}
	s.log.Debug("zeek: Zeek reports an error", args...)
}

// send hands a frame to the writer and waits until it is written. If ctx
// ends first, the frame may still be written.
func (s *session) send(ctx context.Context, b []byte, what string) error {
	f := outFrame{b: b, what: what, done: make(chan error, 1)}
	select {
	case s.out <- f:
	case <-s.ctx.Done():
		return errSessionClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-f.done:
		return err
	case <-s.ctx.Done():
		return errSessionClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer owns the connection's writes. Its deadline comes from the session,
// not from whoever handed in the frame: a write abandoned half way closes
// a WebSocket connection, and one subscription ending must not do that.
func (s *session) writer() {
	wt := s.e.app.WriteTimeout.D()
	for {
		select {
		case f := <-s.out:
			// Stored before writing: Zeek may answer before Write returns.
			what := f.what
			s.lastSent.Store(&what)
			ctx, cancel := context.WithTimeout(s.ctx, wt)
			err := s.conn.Write(ctx, websocket.MessageText, f.b)
			cancel()
			f.done <- err
			if err != nil {
				if s.ctx.Err() == nil {
					s.fail(fmt.Errorf("write (write_timeout %s): %w", wt, err))
				}
				return
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// pinger checks the connection while no traffic might tell that it broke.
func (s *session) pinger() {
	every := s.e.app.PingInterval.D()
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(s.ctx, every)
			err := s.conn.Ping(ctx)
			cancel()
			if err != nil {
				if s.ctx.Err() == nil {
					s.fail(fmt.Errorf("no pong within ping_interval %s: %w", every, err))
				}
				return
			}
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *session) sendEvent(ctx context.Context, topic string, ev bj.Event) error {
	b, err := bj.EncodeEvent(topic, ev)
	if err != nil {
		return fmt.Errorf("zeek: encode %s: %w", ev.Name, err)
	}
	return s.send(ctx, b, ev.Name+" on "+topic)
}

// subscribe handles Tenzir::subscribe(topic, snapshot_intel).
func (s *session) subscribe(ev bj.Event) {
	var topic bj.String
	var window bj.Timespan
	ok := len(ev.Args) == 2
	if ok {
		topic, ok = ev.Args[0].(bj.String)
	}
	if ok {
		window, ok = ev.Args[1].(bj.Timespan)
	}
	if !ok || topic == "" || !bj.BrokerSafe(string(topic)) {
		s.e.c.rejected.add(rejBadSubscribe)
		s.log.Warn("zeek: ignoring a subscribe without a topic and a snapshot interval", "event", ev.Name, "args", len(ev.Args))
		return
	}
	ack := s.eventName("subscription_acknowledged")
	s.mu.Lock()
	z := s.byTopic[string(topic)]
	s.mu.Unlock()
	if z != nil {
		// The script asks again until it sees an acknowledgement; older
		// Zeeks keep asking to notice a reconnected bus. One subscription
		// per topic and connection is all the Zeek gets: acknowledge it
		// again rather than deliver everything twice.
		s.e.c.resubscribed.Add(1)
		s.log.Debug("zeek: repeated subscribe; acknowledging the existing subscription", "topic", string(topic), "p2p_topic", z.p2p)
		if err := s.sendEvent(s.ctx, ManagementTopic, bj.NewEvent(ack, bj.String(z.p2p))); err != nil {
			s.log.Debug("zeek: acknowledgement not sent", "error", err)
		}
		return
	}
	p2p, err := newP2P(string(topic))
	if err != nil {
		s.e.c.rejected.add(rejSubscribeError)
		s.log.Error("zeek: subscribe", "error", err)
		return
	}
	snapshot := max(time.Duration(window), 0)
	z = &zsub{topic: string(topic), p2p: p2p, snapshot: snapshot, ready: make(chan struct{})}
	ctx, cancel := context.WithTimeout(s.ctx, subscribeTimeout)
	defer cancel()
	sub, err := s.bus.Subscribe(ctx, plugins.SubscribeRequest{
		Topics:   []string{z.topic},
		Snapshot: snapshot,
		Sink:     s.sink(z),
		Name:     p2p + "@" + s.e.url,
	})
	if err != nil {
		s.e.c.rejected.add(rejSubscribeError)
		s.log.Warn("zeek: the bus refused a subscription; Zeek will ask again", "topic", z.topic, "error", err)
		return
	}
	z.sub = sub
	s.mu.Lock()
	s.subs[p2p], s.byTopic[z.topic] = z, z
	s.mu.Unlock()
	s.e.c.subscribed.Add(1)
	// Nothing goes to the p2p topic before the acknowledgement: the sink
	// waits for ready. If the acknowledgement cannot be written the
	// connection is gone, and closing it ends the subscription.
	if err := s.sendEvent(s.ctx, ManagementTopic, bj.NewEvent(ack, bj.String(p2p))); err != nil {
		s.log.Debug("zeek: acknowledgement not sent", "error", err)
		return
	}
	close(z.ready)
	s.log.Info("zeek: Zeek subscribed", "topic", z.topic, "p2p_topic", p2p, "snapshot", snapshot, "snapshot_id", sub.SnapshotID())
}

// unsubscribe handles Tenzir::unsubscribe(p2p_topic).
func (s *session) unsubscribe(ev bj.Event) {
	var topic bj.String
	ok := len(ev.Args) == 1
	if ok {
		topic, ok = ev.Args[0].(bj.String)
	}
	if !ok {
		s.reject(rejBadUnsubscribe, "zeek: ignoring an unsubscribe without a topic", "args", len(ev.Args))
		return
	}
	s.mu.Lock()
	z := s.subs[string(topic)]
	if z != nil {
		delete(s.subs, z.p2p)
		delete(s.byTopic, z.topic)
	}
	s.mu.Unlock()
	if z == nil {
		s.reject(rejUnknownTopic, "zeek: unsubscribe of a topic this Zeek does not have", "topic", string(topic))
		return
	}
	s.end(z, "Zeek unsubscribed", false)
	s.e.c.unsubscribed.Add(1)
}

// end closes a subscription. When the bus is stopping, the subscription
// may be gone already, and that is no news.
func (s *session) end(z *zsub, why string, stopping bool) {
	timeout := closeTimeout
	if stopping {
		timeout = stoppingCloseTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	if err := z.sub.Close(ctx); err != nil {
		level := slog.LevelWarn
		if stopping {
			level = slog.LevelDebug
		}
		s.log.Log(ctx, level, "zeek: ending a subscription", "p2p_topic", z.p2p, "error", err, "took", time.Since(t0))
	}
	s.log.Info("zeek: subscription ended", "reason", why, "topic", z.topic, "p2p_topic", z.p2p, "intel_sent", z.sent.Load())
}

// closeAll ends every subscription of the session: the connection is gone.
func (s *session) closeAll(stopping bool) {
	s.mu.Lock()
	subs := make([]*zsub, 0, len(s.subs))
	for _, z := range s.subs {
		subs = append(subs, z)
	}
	clear(s.subs)
	clear(s.byTopic)
	s.mu.Unlock()
	why := "connection closed"
	if stopping {
		why = "the app is stopping"
	}
	var wg sync.WaitGroup
	for _, z := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.end(z, why, stopping)
		}()
	}
	wg.Wait()
}

func (s *session) subscriptionStats() []SubscriptionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SubscriptionStats, 0, len(s.subs))
	for _, z := range s.subs {
		out = append(out, SubscriptionStats{
			Topic: z.topic, P2P: z.p2p, Snapshot: z.snapshot, SnapshotID: z.sub.SnapshotID(),
			IntelSent: z.sent.Load(), Bus: z.sub.Stats(),
		})
	}
	return out
}

// sink turns what the subscription delivers into intel events on the p2p
// topic of this Zeek. Indicators Zeek cannot take are counted, not errors.
func (s *session) sink(z *zsub) plugins.Sink {
	name := s.eventName("intel")
	return func(ctx context.Context, env *messages.Envelope) error {
		select {
		case <-z.ready:
		case <-s.ctx.Done():
			return errSessionClosed
		case <-ctx.Done():
			return ctx.Err()
		}
		if env.Type != messages.TypeIndicator {
			s.e.st.notApplicable.add(naNotIndicator)
			return nil
		}
		item, reason := mapIndicator(env.Payload)
		if reason != "" {
			s.e.st.notApplicable.add(reason)
			s.log.Debug("zeek: indicator not applicable to Zeek", "reason", reason, "p2p_topic", z.p2p)
			return nil
		}
		if err := s.sendEvent(ctx, z.p2p, item.event(name)); err != nil {
			return err
		}
		z.sent.Add(1)
		s.e.c.intelSent.Add(1)
		return nil
	}
}

// sighting handles Tenzir::sighting(ts, intel_id, context).
func (s *session) sighting(ev bj.Event) {
	payload, cause, err := mapSighting(ev, s.e.app.Source)
	if err != nil {
		s.reject(cause, "zeek: ignoring a sighting", "error", err)
		return
	}
	if err := s.bus.Publish(s.ctx, payload); err != nil {
		s.e.c.rejected.add(rejPublish)
		s.log.Warn("zeek: the bus refused a sighting", "error", err)
		return
	}
	s.e.c.sightings.Add(1)
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
