// Package zeektest is a fake Zeek for tests: a real WebSocket server on
// loopback that speaks Zeek's WebSocket API (version 1, as Zeek ≥ 7.2
// serves it) and plays the part of threatbus.zeek behind it.
//
// The server side follows Zeek: the handshake is a JSON array of topics,
// answered with an ack or an error; a wrong URI or X-Application-Name is
// refused with an error and close code 1008; every later message must be an
// event whose name the script declares and whose arguments convert to the
// declared types, or it is answered with deserialization_failed as Zeek
// does ("failed to decode JSON object", "no topic in top-level JSON
// object", "failed to create Zeek event"); events go only to clients
// subscribed to a prefix of their topic, never back to their sender.
//
// The script side follows threatbus.zeek: it takes its declarations and
// options from the script file, subscribes to the management topic and the
// intel topic, asks for intel when a bus connects, switches to the p2p topic
// it is given and keeps the intel it receives. Every message a client sends
// after its handshake is also checked against the DataMessage definition of
// Broker's published schema (with the "us" timespan unit the schema forgets).
//
// It is a test helper: production code must not import it.
package zeektest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/santhosh-tekuri/jsonschema/v6"

	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

// Timeout bounds every wait and write of this package.
const Timeout = 15 * time.Second

// Options configure a fake Zeek.
type Options struct {
	// Script is the path of threatbus.zeek.
	Script string
	// EditScript, when set, changes the script's text before it is read:
	// to play a Zeek whose script declares something else.
	EditScript func(string) string
	// Schema is the path of Broker's v1-broker-out.schema.json.
	Schema string
	// Metadata makes the events Zeek sends carry metadata (a network
	// timestamp), as Zeek ≥ 8 does; without it they have none, as 7.2.
	Metadata bool
	// Version is what the ack reports; "8.0.0" by default.
	Version string
	// SnapshotIntel overrides the script's snapshot_intel when not 0.
	SnapshotIntel time.Duration
	// TLS makes the server speak wss.
	TLS *tls.Config
	// Logf, when set, receives what the fake does (t.Logf).
	Logf func(format string, args ...any)
}

// Intel is one Tenzir::intel event the script received.
type Intel struct {
	Topic     string // the topic it was published on
	P2P       string // the script's p2p topic when it arrived
	TS        time.Time
	ID        string
	Type      string
	Indicator string
	Operation string
}

// Event is any event the script handled.
type Event struct {
	Topic string
	Event bj.Event
}

// Server is a running fake Zeek.
type Server struct {
	t      testing.TB
	opts   Options
	script *Script
	schema *jsonschema.Schema

	// From the script.
	manageTopic, sightingTopic, intelTopic string
	snapshot                               time.Duration

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	ln       net.Listener
	srv      *http.Server
	addr     string // fixed once listening: Restart uses it again
	clients  map[*client]bool
	active   int // serve calls running
	handlers sync.WaitGroup
	nextID   int

	// What the script holds.
	subs       map[string]bool // topic prefixes it subscribed to
	buses      map[string]bool // ids of connected clients that are buses
	p2p        string
	acked      bool
	intel      []Intel
	store      map[[2]string]string // (type, indicator) → id
	events     []Event
	subscribes int

	// What the server saw and did.
	headers  []http.Header
	received [][]byte
	invalid  []string
	sentErr  []bj.ErrorMessage
	acks     int
}

type client struct {
	conn  *websocket.Conn
	id    string
	subs  []string
	acked bool
}

// Start starts a fake Zeek on a free loopback port; it stops when the test
// ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	src, err := os.ReadFile(opts.Script)
	if err != nil {
		t.Fatalf("zeektest: %v", err)
	}
	text := string(src)
	if opts.EditScript != nil {
		text = opts.EditScript(text)
	}
	script, err := ParseScript(text)
	if err != nil {
		t.Fatalf("zeektest: %s: %v", opts.Script, err)
	}
	if opts.Version == "" {
		opts.Version = "8.0.0"
	}
	s := &Server{
		t: t, opts: opts, script: script,
		changed: make(chan struct{}),
		clients: map[*client]bool{},
		subs:    map[string]bool{},
		buses:   map[string]bool{},
		store:   map[[2]string]string{},
	}
	s.schema = loadSchema(t, opts.Schema)
	for _, v := range []struct {
		dst  *string
		name string
	}{{&s.manageTopic, "management_topic"}, {&s.sightingTopic, "sighting_topic"}, {&s.intelTopic, "intel_topic"}} {
		if *v.dst, err = script.String(script.Module + "::" + v.name); err != nil {
			t.Fatalf("zeektest: %v", err)
		}
	}
	if s.snapshot, err = script.Interval(script.Module + "::snapshot_intel"); err != nil {
		t.Fatalf("zeektest: %v", err)
	}
	if opts.SnapshotIntel != 0 {
		s.snapshot = opts.SnapshotIntel
	}
	// zeek_init
	s.subs[s.manageTopic] = true
	s.subs[s.intelTopic] = true
	if err := s.listen("127.0.0.1:0"); err != nil {
		t.Fatalf("zeektest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func loadSchema(t testing.TB, path string) *jsonschema.Schema {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("zeektest: %v", err)
	}
	// Broker writes microseconds as "us"; the published pattern forgets it.
	raw = bytes.Replace(raw, []byte(`(ns|ms|s|min|h|d)`), []byte(`(ns|us|ms|s|min|h|d)`), 1)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("zeektest: %s: %v", path, err)
	}
	c := jsonschema.NewCompiler()
	const url = "file:///v1-broker-out.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatalf("zeektest: %v", err)
	}
	sch, err := c.Compile(url + "#/definitions/DataMessage")
	if err != nil {
		t.Fatalf("zeektest: %v", err)
	}
	return sch
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf("zeektest %s: "+format, append([]any{s.addr}, args...)...)
	}
}

// logWriter sends the http.Server's complaints (TLS handshakes refused on
// purpose, say) to Logf instead of stderr.
type logWriter struct{ s *Server }

func (w logWriter) Write(p []byte) (int, error) {
	w.s.logf("%s", strings.TrimSpace(string(p)))
	return len(p), nil
}

func (s *Server) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if s.addr == "" {
		s.addr = ln.Addr().String() // set once, before any goroutine reads it
	}
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	srv := &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: Timeout,
		ErrorLog: log.New(logWriter{s}, "", 0)}
	s.mu.Lock()
	s.ln, s.srv = ln, srv
	s.mu.Unlock()
	s.handlers.Add(1)
	go func() {
		defer s.handlers.Done()
		_ = srv.Serve(ln)
	}()
	return nil
}

// URL is the server's address as the bus is configured with it:
// ws://127.0.0.1:port (wss with TLS), without the path.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	scheme := "ws"
	if s.opts.TLS != nil {
		scheme = "wss"
	}
	return scheme + "://" + s.addr
}

// Stop closes the server and drops every client, as a Zeek that exits.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	s.DropClients()
	s.handlers.Wait()
	// Hijacked connections are not the http.Server's any more: wait for
	// their handlers here, so that a stopped fake leaves nothing running.
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		n, ch := s.active, s.changed
		s.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			s.t.Errorf("zeektest %s: %d connections still open %s after Stop", s.addr, n, Timeout)
			return
		}
	}
}

// Restart listens again on the same address after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.listen(s.addr); err != nil {
		s.t.Fatalf("zeektest: listen again on %s: %v", s.addr, err)
	}
}

// Close stops the server for good.
func (s *Server) Close() { s.Stop() }

// DropClients cuts every client's connection without a close handshake,
// as a network failure would.
func (s *Server) DropClients() {
	s.mu.Lock()
	var cs []*client
	for c := range s.clients {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.conn.CloseNow()
	}
}

// notify wakes waiters; s.mu is held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Wait waits until cond holds. cond may call the Server's accessors; it is
// evaluated again after every change of the server's state.
func (s *Server) Wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("zeektest %s: timed out after %s waiting for %s", s.addr, Timeout, what)
		}
	}
}

var appNameRE = regexp.MustCompile(`^[-/_.=:*@a-zA-Z0-9]+$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active--
		s.notify()
		s.mu.Unlock()
	}()
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	conn.SetReadLimit(16 << 20)
	ctx := context.Background()
	s.mu.Lock()
	if s.srv == nil { // stopped meanwhile
		s.mu.Unlock()
		_ = conn.CloseNow()
		return
	}
	s.nextID++
	c := &client{conn: conn, id: fmt.Sprintf("3c7b1e2a-8a43-4c4e-9f0e-1b2c3d4e5f60-websocket-%d", s.nextID)}
	s.clients[c] = true
	s.headers = append(s.headers, r.Header.Clone())
	s.notify()
	s.mu.Unlock()
	defer s.lost(c)
	// Zeek checks both after the upgrade and answers with an error.
	if r.URL.Path != "/v1/messages/json" {
		s.sendError(conn, "invalid_uri", "Invalid URI - use /v1/messages/json")
		_ = conn.Close(websocket.StatusPolicyViolation, "Invalid URI - use /v1/messages/json")
		return
	}
	if names, ok := r.Header["X-Application-Name"]; ok && (len(names) != 1 || !appNameRE.MatchString(names[0])) {
		s.sendError(conn, "invalid_application_name", "Invalid X-Application-Name")
		_ = conn.Close(websocket.StatusPolicyViolation, "Invalid X-Application-Name")
		return
	}

	first, broken := true, false
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return
		}
		switch {
		case broken:
			// Zeek keeps a client whose handshake failed, unacknowledged;
			// it never processes its messages.
		case first:
			first = false
			if !s.handshake(c, b) {
				broken = true
			}
		default:
			s.handleEvent(c, b)
		}
	}
}

func (s *Server) handshake(c *client, b []byte) bool {
	topics, err := bj.DecodeTopics(b)
	if err != nil {
		msg := "subscriptions not an array"
		if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
			msg = "individual subscription not a string"
		}
		s.sendError(c.conn, "deserialization_failed", msg)
		return false
	}
	s.mu.Lock()
	c.subs = topics
	s.mu.Unlock()
	ack, _ := bj.Encode(&bj.Ack{Endpoint: c.id, Version: s.opts.Version})
	if err := s.write(c.conn, ack); err != nil {
		return false
	}
	s.mu.Lock()
	c.acked = true
	s.acks++
	s.notify()
	s.mu.Unlock()
	s.logf("client %s subscribed to %q", c.id, topics)
	s.clientAdded(c)
	return true
}

// handleEvent is Zeek's HandleEvent for a client's message.
func (s *Server) handleEvent(c *client, b []byte) {
	s.mu.Lock()
	s.received = append(s.received, b)
	if inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b)); err != nil {
		s.invalid = append(s.invalid, fmt.Sprintf("%s: not JSON: %v", b, err))
	} else if err := s.schema.Validate(inst); err != nil {
		s.invalid = append(s.invalid, fmt.Sprintf("%s: %v", b, err))
	}
	s.notify()
	s.mu.Unlock()

	m, err := bj.Decode(b)
	if err == nil && hasUnicodeEscape(b) {
		err = errors.New("Broker's reader has no \\u escapes")
	}
	dm, ok := m.(*bj.DataMessage)
	if err != nil || !ok {
		s.sendError(c.conn, "deserialization_failed", "failed to decode JSON object")
		return
	}
	if dm.Topic == "" {
		s.sendError(c.conn, "deserialization_failed", "no topic in top-level JSON object")
		return
	}
	ev, err := bj.EventOf(dm.Data)
	if err == nil {
		err = s.script.CheckEvent(ev)
	}
	if err != nil {
		s.logf("refusing %s from %s: %v", b, c.id, err)
		s.sendError(c.conn, "deserialization_failed", "failed to create Zeek event")
		return
	}
	s.publish(dm.Topic, ev, c)
}

// publish delivers an event as the cluster does: to every other acked
// client subscribed to a prefix of topic, and to the script if it is.
func (s *Server) publish(topic string, ev bj.Event, from *client) {
	s.mu.Lock()
	var to []*client
	for c := range s.clients {
		if c != from && c.acked && prefixed(topic, c.subs) {
			to = append(to, c)
		}
	}
	scriptGets := false
	for sub := range s.subs {
		scriptGets = scriptGets || strings.HasPrefix(topic, sub)
	}
	s.mu.Unlock()
	if len(to) > 0 {
		e := ev
		if s.opts.Metadata && !e.HasMetadata {
			e.HasMetadata = true
			e.Metadata = []bj.MetadataEntry{{ID: bj.MetadataNetworkTimestamp, Value: bj.NewTimestamp(time.Now())}}
		}
		raw, err := bj.EncodeEvent(topic, e)
		if err != nil {
			s.t.Errorf("zeektest: encode %s: %v", e.Name, err)
			return
		}
		for _, c := range to {
			_ = s.write(c.conn, raw)
		}
	}
	if scriptGets && from != nil {
		s.scriptEvent(topic, ev)
	}
}

func prefixed(topic string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(topic, p) {
			return true
		}
	}
	return false
}

// scriptEvent runs the script's handler for an event from a client.
func (s *Server) scriptEvent(topic string, ev bj.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.notify()
	s.events = append(s.events, Event{Topic: topic, Event: ev})
	switch ev.Name {
	case s.script.Module + "::subscription_acknowledged":
		p2p := string(ev.Args[0].(bj.String))
		if s.p2p != "" && s.p2p != p2p {
			delete(s.subs, s.p2p)
		}
		s.p2p, s.acked = p2p, true
		s.subs[p2p] = true
		s.logf("subscribed to p2p topic %s", p2p)
	case s.script.Module + "::intel":
		rec := ev.Args[0].(bj.Vector)
		in := Intel{
			Topic: topic, P2P: s.p2p,
			TS:        rec[0].(bj.Timestamp).Time,
			ID:        string(rec[1].(bj.String)),
			Type:      string(rec[2].(bj.String)),
			Indicator: string(rec[3].(bj.String)),
			Operation: string(rec[4].(bj.String)),
		}
		s.intel = append(s.intel, in)
		key := [2]string{in.Type, strings.ToLower(in.Indicator)}
		switch in.Operation {
		case "ADD":
			s.store[key] = in.ID
		case "REMOVE":
			delete(s.store, key)
		}
	}
}

// clientAdded is Cluster::websocket_client_added in the script.
func (s *Server) clientAdded(c *client) {
	s.mu.Lock()
	bus := false
	for _, t := range c.subs {
		bus = bus || t == s.manageTopic
	}
	if bus {
		s.buses[c.id] = true
		s.acked = false
	}
	s.mu.Unlock()
	if bus {
		s.Subscribe()
	}
}

// lost is Cluster::websocket_client_lost.
func (s *Server) lost(c *client) {
	_ = c.conn.CloseNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, c)
	if s.buses[c.id] {
		delete(s.buses, c.id)
		if len(s.buses) == 0 {
			s.acked = false
		}
	}
	s.notify()
}

// Subscribe makes the script send Tenzir::subscribe, as it does when a bus
// connects (and again until acknowledged).
func (s *Server) Subscribe() {
	s.mu.Lock()
	s.subscribes++
	s.mu.Unlock()
	s.Publish(s.manageTopic, bj.NewEvent(s.script.Module+"::subscribe", bj.String(s.intelTopic), bj.Timespan(s.snapshot)))
}

// Unsubscribe makes the script send Tenzir::unsubscribe for its p2p topic,
// as it does when Zeek stops.
func (s *Server) Unsubscribe() {
	s.Publish(s.manageTopic, bj.NewEvent(s.script.Module+"::unsubscribe", bj.String(s.P2P())))
}

// Match makes the script report a sighting of intel id, as Intel::match
// does.
func (s *Server) Match(id string, ts time.Time, noisy bool) {
	s.Publish(s.sightingTopic, bj.NewEvent(s.script.Module+"::sighting", bj.NewTimestamp(ts), bj.String(id),
		bj.Table{{Key: bj.String("noisy"), Value: bj.Boolean(noisy)}}))
}

// Publish makes the script publish an event. The event must match the
// script's declarations, as Zeek's own type checks guarantee.
func (s *Server) Publish(topic string, ev bj.Event) {
	if err := s.script.CheckEvent(ev); err != nil {
		s.t.Errorf("zeektest: the script cannot publish this: %v", err)
		return
	}
	s.publish(topic, ev, nil)
}

// SendRaw sends b to every acknowledged client as if Zeek had written it.
func (s *Server) SendRaw(b []byte) {
	s.mu.Lock()
	var to []*client
	for c := range s.clients {
		if c.acked {
			to = append(to, c)
		}
	}
	s.mu.Unlock()
	for _, c := range to {
		_ = s.write(c.conn, b)
	}
}

func (s *Server) write(conn *websocket.Conn, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	return conn.Write(ctx, websocket.MessageText, b)
}

func (s *Server) sendError(conn *websocket.Conn, code, context string) {
	e := bj.ErrorMessage{Code: code, Context: context}
	b, _ := bj.Encode(&e)
	s.mu.Lock()
	s.sentErr = append(s.sentErr, e)
	s.notify()
	s.mu.Unlock()
	_ = s.write(conn, b)
}

// hasUnicodeEscape reports whether a JSON text has a \u escape, which the
// JSON reader in Zeek (CAF's) refuses.
func hasUnicodeEscape(b []byte) bool {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\\' {
			if b[i+1] == 'u' {
				return true
			}
			i++
		}
	}
	return false
}

// P2P is the script's p2p topic ("" before the first acknowledgement).
func (s *Server) P2P() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p2p
}

// Acknowledged reports whether the bus acknowledged the current
// subscription.
func (s *Server) Acknowledged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

// Intel returns the intel events the script received, in order.
func (s *Server) Intel() []Intel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Intel(nil), s.intel...)
}

// Has reports whether the script's intel store holds an indicator of a
// type (case-insensitively, as the Intel framework matches), and its id.
func (s *Server) Has(intelType, indicator string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.store[[2]string{intelType, strings.ToLower(indicator)}]
	return id, ok
}

// Events returns every event the script handled.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Errors returns the error messages the server sent.
func (s *Server) Errors() []bj.ErrorMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bj.ErrorMessage(nil), s.sentErr...)
}

// Invalid describes the client messages that failed the schema.
func (s *Server) Invalid() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.invalid...)
}

// Received returns every message clients sent after their handshake.
func (s *Server) Received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.received...)
}

// Headers returns the HTTP headers of every WebSocket handshake.
func (s *Server) Headers() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

// Clients is the number of connected clients.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Acks is how many handshakes the server acknowledged.
func (s *Server) Acks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acks
}

// Subscribes is how often the script sent Tenzir::subscribe.
func (s *Server) Subscribes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subscribes
}

// Snapshot is the snapshot window the script asks for.
func (s *Server) Snapshot() time.Duration { return s.snapshot }
