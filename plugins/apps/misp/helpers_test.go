package misp

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	zmq4 "github.com/pebbe/zmq4"
	"go.uber.org/goleak"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/inmem"
	"github.com/threatbus/threatbus/tests/bustest"
)

// TestMain checks that no test leaves a goroutine behind. protoactor's
// dead-letter throttle goroutine lives for the process and is not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottleWithLogger.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	)
}

// testdataDir holds the MISP payloads of shared/testdata/misp.
var testdataDir = filepath.Join("..", "..", "..", "..", "shared", "testdata", "misp")

const heartbeatFile = "heartbeat-self.json"

// testdataFiles returns the names of the files in testdataDir, sorted.
func testdataFiles(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(testdataDir)
	if err != nil {
		t.Fatalf("read %s: %v", testdataDir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) < 2 {
		t.Fatalf("%s: only %d files", testdataDir, len(names))
	}
	return names
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const testKey = "test-api-key-0123456789"

// newTestApp returns an initialised app whose ZeroMQ intake points at
// zmqPort on loopback and whose REST API is apiURL.
func newTestApp(t testing.TB, zmqPort int, apiURL string, edit func(*App)) *App {
	t.Helper()
	a := New()
	a.API.URL = apiURL
	a.API.Key = config.Secret(testKey)
	a.ZMQ.Host = "127.0.0.1"
	a.ZMQ.Port = zmqPort
	a.Sightings.RetryMin = config.Duration(10 * time.Millisecond)
	a.Sightings.RetryMax = config.Duration(80 * time.Millisecond)
	if edit != nil {
		edit(a)
	}
	if err := a.Init(); err != nil {
		t.Fatalf("init: %v", err)
	}
	return a
}

// startBus starts a bus running app as "misp"; log collects the bus's log.
func startBus(t testing.TB, app *App, configure func(*config.Config)) (*bustest.Bus, *bustest.SyncBuffer) {
	t.Helper()
	log := &bustest.SyncBuffer{}
	var w io.Writer = log
	if os.Getenv("TBTEST_LOG") != "" {
		w = io.MultiWriter(log, os.Stderr)
	}
	b := bustest.Start(t, &inmem.Backbone{}, bustest.Options{
		Apps:      []config.Instance{{Kind: plugins.KindApp, Name: Name, Plugin: app}},
		Configure: configure,
		Log:       w,
	})
	if app.Sightings.Enabled { // publishing sightings before this would miss the app
		bustest.Eventually(t, "the sightings subscription", func() bool {
			app.st.mu.Lock()
			defer app.st.mu.Unlock()
			return app.st.sub != nil
		})
	}
	return b, log
}

// freePort returns a loopback port nothing listens on (closed at once).
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

// publisher is a stand-in for MISP's ZeroMQ PUB socket. It is used from
// the test goroutine only.
type publisher struct {
	t    testing.TB
	ctx  *zmq4.Context
	sock *zmq4.Socket
	port int
}

// newPublisher binds a PUB socket on loopback (port 0 picks one). setup,
// when given, configures the socket before it binds (security).
func newPublisher(t testing.TB, port int, setup func(*zmq4.Socket) error) *publisher {
	t.Helper()
	zctx, err := zmq4.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisherIn(t, zctx, port, setup)
	p.ctx = zctx
	return p
}

func newPublisherIn(t testing.TB, zctx *zmq4.Context, port int, setup func(*zmq4.Socket) error) *publisher {
	t.Helper()
	var sock *zmq4.Socket
	var err error
	if zctx == nil {
		sock, err = zmq4.NewSocket(zmq4.PUB)
	} else {
		sock, err = zctx.NewSocket(zmq4.PUB)
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = sock.SetLinger(0)
	if setup != nil {
		if err := setup(sock); err != nil {
			t.Fatal(err)
		}
	}
	addr := "tcp://127.0.0.1:*"
	if port != 0 {
		addr = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	}
	if err := sock.Bind(addr); err != nil {
		t.Fatalf("bind %s: %v", addr, err)
	}
	ep, err := sock.GetLastEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(strings.TrimPrefix(ep, "tcp://"))
	var got int
	fmt.Sscan(portStr, &got)
	p := &publisher{t: t, sock: sock, port: got}
	t.Cleanup(p.close)
	return p
}

func (p *publisher) send(topic string, payload []byte) {
	p.t.Helper()
	if _, err := p.sock.SendBytes(append([]byte(topic+" "), payload...), 0); err != nil {
		p.t.Fatalf("publish %s: %v", topic, err)
	}
}

func (p *publisher) close() {
	if p.sock != nil {
		_ = p.sock.Close()
		p.sock = nil
	}
	if p.ctx != nil {
		_ = p.ctx.Term()
		p.ctx = nil
	}
}

// awaitHeartbeat publishes MISP's heartbeat until the app has heard one:
// a SUB socket misses what is published before its subscription reaches
// the publisher, so data is sent only after this.
func (p *publisher) awaitHeartbeat(app *App) {
	p.t.Helper()
	hb := readTestdata(p.t, heartbeatFile)
	before := app.Stats().Heartbeats
	deadline := time.Now().Add(bustest.Timeout)
	for app.Stats().Heartbeats == before {
		if time.Now().After(deadline) {
			p.t.Fatalf("the app heard no heartbeat within %s (ready: %v)", bustest.Timeout, app.Ready())
		}
		p.send(topicSelf, hb)
		waitFor(20*time.Millisecond, func() bool { return app.Stats().Heartbeats != before })
	}
}

// waitFor polls cond for at most d; it reports whether cond held.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// fakeMISP is an httptest MISP: it checks every request's method, path,
// headers and body, takes sightings (failing as told first) and answers
// restSearch from a list of attributes, page by page.
type fakeMISP struct {
	t   testing.TB
	srv *httptest.Server

	mu        sync.Mutex
	fail500   int               // answer this many sighting requests with 500
	hangups   int               // then drop this many connections without an answer
	refuse    map[string]string // attribute uuid → 403 message
	attempts  int               // sighting requests received
	sightings []map[string]any  // accepted sighting bodies, in order
	attrs     []json.RawMessage // what restSearch finds
	searches  []map[string]any  // restSearch bodies answered, in order

	searchFail     int // answer this many restSearch requests with 500
	searchAttempts int // restSearch requests received
}

func newFakeMISP(t testing.TB) *fakeMISP {
	m := &fakeMISP{t: t, refuse: map[string]string{}}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *fakeMISP) serve(w http.ResponseWriter, r *http.Request) {
	t := m.t
	if r.Method != http.MethodPost {
		t.Errorf("MISP got %s %s, want POST", r.Method, r.URL.Path)
	}
	for h, want := range map[string]string{"Authorization": testKey, "Accept": "application/json", "Content-Type": "application/json"} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("MISP got %s: %q on %s, want %q", h, got, r.URL.Path, want)
		}
	}
	var body map[string]any
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Errorf("MISP got a body that is not a JSON object on %s: %v", r.URL.Path, err)
		http.Error(w, `{"message": "bad body"}`, http.StatusBadRequest)
		return
	}
	switch r.URL.Path {
	case "/sightings/add":
		m.serveSighting(w, body)
	case "/attributes/restSearch":
		m.serveSearch(w, body)
	default:
		t.Errorf("MISP got POST %s", r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"name": "Not Found", "message": "Not Found", "url": "` + r.URL.Path + `"}`))
	}
}

func (m *fakeMISP) serveSighting(w http.ResponseWriter, body map[string]any) {
	m.mu.Lock()
	m.attempts++
	fail, hangup := m.fail500 > 0, m.fail500 == 0 && m.hangups > 0
	if fail {
		m.fail500--
	} else if hangup {
		m.hangups--
	}
	uuid, _ := body["uuid"].(string)
	refusal, refused := m.refuse[uuid]
	m.mu.Unlock()
	switch {
	case fail:
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"name": "An Internal Error Has Occurred.", "message": "An Internal Error Has Occurred.", "url": "/sightings/add"}`))
		return
	case hangup:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	case refused:
		w.WriteHeader(http.StatusForbidden)
		// MISP's saveFailResponse: a generic name and message, the
		// reason in errors.
		_, _ = fmt.Fprintf(w, `{"saved": false, "name": "Could not add Sighting", "message": "Could not add Sighting", "url": "/sightings/add", "errors": %q}`, refusal)
		return
	}
	m.mu.Lock()
	m.sightings = append(m.sightings, body)
	n := len(m.sightings)
	m.mu.Unlock()
	_, _ = fmt.Fprintf(w, `{"Sighting": {"id": "%d", "attribute_id": "1", "event_id": "1", "org_id": "1", "date_sighting": "%v", "uuid": "5f7b2284-0000-4000-8000-%012d", "source": %q, "type": "0"}}`,
		n, body["timestamp"], n, fmt.Sprint(body["source"]))
}

func (m *fakeMISP) serveSearch(w http.ResponseWriter, body map[string]any) {
	m.mu.Lock()
	m.searchAttempts++
	fail := m.searchFail > 0
	if fail {
		m.searchFail--
	} else {
		m.searches = append(m.searches, body)
	}
	attrs := m.attrs
	m.mu.Unlock()
	if fail {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(`<html>502 Bad Gateway</html>`))
		return
	}
	page, _ := body["page"].(json.Number).Int64()
	limit, _ := body["limit"].(json.Number).Int64()
	if page < 1 || limit < 1 {
		m.t.Errorf("restSearch without page/limit: %v", body)
		http.Error(w, `{"message": "bad paging"}`, http.StatusBadRequest)
		return
	}
	lo := min(int((page-1)*limit), len(attrs))
	hi := min(lo+int(limit), len(attrs))
	out, _ := json.Marshal(map[string]any{"response": map[string]any{"Attribute": attrs[lo:hi]}})
	_, _ = w.Write(out)
}

func (m *fakeMISP) accepted() []map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]map[string]any(nil), m.sightings...)
}

func (m *fakeMISP) searchBodies() []map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]map[string]any(nil), m.searches...)
}
