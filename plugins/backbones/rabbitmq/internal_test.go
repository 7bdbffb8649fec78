package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

func TestBackoff(t *testing.T) {
	min, max := 100*time.Millisecond, 30*time.Second
	for _, c := range []struct {
		n        int
		lo, hi   time.Duration // the jitter's range
		rnd      float64
		expected time.Duration
	}{
		{n: 1, rnd: 0, expected: 50 * time.Millisecond},
		{n: 1, rnd: 1, expected: 100 * time.Millisecond},
		{n: 2, rnd: 1, expected: 200 * time.Millisecond},
		{n: 4, rnd: 0.5, expected: 600 * time.Millisecond},
		{n: 10, rnd: 1, expected: 30 * time.Second}, // 51.2 s capped
		{n: 10, rnd: 0, expected: 15 * time.Second},
		{n: 1000, rnd: 1, expected: 30 * time.Second}, // no overflow
	} {
		if got := backoff(c.n, min, max, func() float64 { return c.rnd }); got != c.expected {
			t.Errorf("backoff(%d, rnd=%v) = %s, want %s", c.n, c.rnd, got, c.expected)
		}
	}
	// With the real jitter every delay lies in the upper half of its step.
	for n := 1; n < 12; n++ {
		d := min << (n - 1)
		if d > max {
			d = max
		}
		for i := 0; i < 100; i++ {
			if got := backoff(n, min, max, jitter); got < d/2 || got > d {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, got, d/2, d)
			}
		}
	}
}

func TestRing(t *testing.T) {
	var r ring[int]
	next, want := 0, 0
	for round := 0; round < 50; round++ {
		for i := 0; i < round*7%40+1; i++ {
			r.push(next)
			next++
		}
		for i := 0; i < round*5%30 && r.len() > 0; i++ {
			if r.at(0) != want || r.peek() != want {
				t.Fatalf("at(0)=%d peek=%d, want %d", r.at(0), r.peek(), want)
			}
			if got := r.pop(); got != want {
				t.Fatalf("pop = %d, want %d", got, want)
			}
			want++
		}
		for i := 0; i < r.len(); i++ {
			if r.at(i) != want+i {
				t.Fatalf("at(%d) = %d, want %d", i, r.at(i), want+i)
			}
		}
	}
	for r.len() > 0 {
		if got := r.pop(); got != want {
			t.Fatalf("pop = %d, want %d", got, want)
		}
		want++
	}
	if want != next {
		t.Fatalf("popped %d of %d", want, next)
	}
}

func msg(id string) *outMsg { return &outMsg{own: &ownMsg{id: id}} }

func TestOutboxConfirmResendAndReturn(t *testing.T) {
	var expired atomic.Uint64
	o := newOutbox(time.Hour, &expired)
	o.reopen()
	always := func() bool { return true }
	far := time.Now().Add(time.Hour)
	for _, id := range []string{"a", "b", "c", "d"} {
		if err := o.accept(msg(id), 10, far, always); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.accept(msg("e"), 4, time.Now(), always); err != errFull {
		t.Fatalf("accept beyond the buffer: %v, want errFull", err)
	}
	// A window of 2: a and b go out, c waits.
	for _, want := range []string{"a", "b"} {
		m, ok := o.next(2)
		if !ok || m.own.id != want {
			t.Fatalf("next = %v, %v; want %s", m, ok, want)
		}
	}
	if _, ok := o.next(2); ok {
		t.Fatal("next beyond the window")
	}
	o.confirm(true, time.Now()) // a
	if m, _ := o.next(2); m.own.id != "c" {
		t.Fatalf("next after a confirm = %s, want c", m.own.id)
	}
	// The connection breaks with b and c unconfirmed: both go out again,
	// first, in order.
	if n := o.resend(); n != 2 {
		t.Fatalf("resend = %d, want 2", n)
	}
	for _, want := range []string{"b", "c", "d"} {
		if m, ok := o.next(10); !ok || m.own.id != want {
			t.Fatalf("after resend: next = %v, want %s", m, want)
		}
	}
	// b is nacked: it goes to the back.
	o.confirm(false, time.Now())
	if m, ok := o.next(10); !ok || m.own.id != "b" {
		t.Fatalf("after a nack: next = %v, want b", m)
	}
	if buffered, inTransit := o.sizes(); buffered != 3 || inTransit != 4 {
		t.Fatalf("sizes = %d, %d; want 3, 4", buffered, inTransit)
	}
	// What comes back is no longer in transit, confirmed or not.
	if !o.returned("a") || !o.returned("d") || o.returned("zz") {
		t.Fatal("returned reports the wrong ids")
	}
	if _, inTransit := o.sizes(); inTransit != 2 {
		t.Fatalf("in transit = %d, want 2", inTransit)
	}
}

func TestOutboxStopsWaitingForLostMessages(t *testing.T) {
	var expired atomic.Uint64
	timeout := 50 * time.Millisecond
	o := newOutbox(timeout, &expired)
	o.reopen()
	always := func() bool { return true }
	if err := o.accept(msg("lost"), 10, time.Now().Add(time.Second), always); err != nil {
		t.Fatal(err)
	}
	o.next(10)
	o.confirm(true, time.Now())
	// max_in_flight 0: the publish waits for "lost", which never comes back
	// (x-max-length dropped it), until the timeout after its confirm.
	start := time.Now()
	if !o.waitInFlight(0, time.Now().Add(time.Second), timeout, always) {
		t.Fatal("waitInFlight gave up at the deadline instead of expiring the lost message")
	}
	if d := time.Since(start); d < timeout/2 || d > time.Second/2 {
		t.Fatalf("waited %s, want about %s", d, timeout)
	}
	if expired.Load() != 1 {
		t.Fatalf("expired = %d, want 1", expired.Load())
	}
	// Disconnected, nobody waits.
	if err := o.accept(msg("x"), 10, time.Now().Add(time.Second), always); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	o.waitInFlight(0, time.Now().Add(time.Second), timeout, func() bool { return false })
	if time.Since(start) > timeout {
		t.Fatal("waitInFlight waited while disconnected")
	}
	// A full buffer refuses at once while disconnected.
	if err := o.accept(msg("y"), 1, time.Now().Add(time.Second), func() bool { return false }); err != errFull {
		t.Fatalf("accept into a full buffer while disconnected: %v", err)
	}
	o.close()
	if err := o.accept(msg("z"), 10, time.Now().Add(time.Second), always); err != errStopped {
		t.Fatalf("accept after close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if unconfirmed, unreturned := o.waitEmpty(ctx, timeout); unconfirmed != 1 || unreturned != 0 {
		t.Fatalf("waitEmpty = %d, %d; want 1, 0", unconfirmed, unreturned)
	}
}

func TestDecode(t *testing.T) {
	ids := 0
	newID := func() string { ids++; return "generated" }
	for _, c := range []struct {
		name, body, id string
		headers        amqp.Table
		wantCause      string
		wantTopic      string
		wantID         string
		wantOrigin     string
	}{
		{name: "indicator from a Go bus", body: `{"type": "indicator", "id": "indicator--x"}`, id: "abc-1", headers: amqp.Table{headerOrigin: "zmq"},
			wantTopic: messages.TopicIndicator, wantID: "abc-1", wantOrigin: "zmq"},
		{name: "sighting from the original", body: `{"type": "sighting"}`,
			wantTopic: messages.TopicSighting, wantID: "generated", wantOrigin: originUnknown},
		{name: "snapshot request", body: `{"type": "snapshotrequest", "snapshot_type": 1, "snapshot_id": "x", "snapshot": 3}`, id: "r",
			wantTopic: messages.TopicSnapshotRequest, wantID: "r", wantOrigin: originUnknown},
		{name: "snapshot envelope", body: `{"type":"snapshotenvelope","snapshot_type":2,"snapshot_id":"x","body":{}}`, id: "e",
			wantTopic: messages.TopicSnapshotEnvelope, wantID: "e", wantOrigin: originUnknown},
		{name: "empty", body: ``, wantCause: causeEmpty},
		{name: "not JSON", body: `hello`, wantCause: causeMalformed},
		{name: "truncated", body: `{"type": "indicator"`, wantCause: causeMalformed},
		{name: "two objects", body: `{"type":"indicator"}{}`, wantCause: causeMalformed},
		{name: "array", body: `[{"type":"indicator"}]`, wantCause: causeMalformed},
		{name: "no type", body: `{"id": "x"}`, wantCause: causeBadType},
		{name: "type not a string", body: `{"type": 5}`, wantCause: causeBadType},
		{name: "type twice", body: `{"type": "indicator", "type": "sighting"}`, wantCause: causeBadType},
		{name: "unknown type", body: `{"type": "malware"}`, wantCause: causeUnknownType},
		{name: "the original's old Intel", body: `{"ts": "2020-01-01", "id": "x", "data": {}, "operation": "ADD"}`, wantCause: causeBadType},
	} {
		t.Run(c.name, func(t *testing.T) {
			env, cause, err := decode([]byte(c.body), c.id, c.headers, newID)
			if c.wantCause != "" {
				if err == nil || cause != c.wantCause {
					t.Fatalf("decode = %v, %q, %v; want cause %q", env, cause, err, c.wantCause)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := env.Validate(); err != nil {
				t.Fatalf("the router would refuse it: %v", err)
			}
			if env.Topic != c.wantTopic || env.Id != c.wantID || env.Origin != c.wantOrigin || string(env.Payload) != c.body {
				t.Fatalf("envelope %+v", env)
			}
		})
	}
}

// FuzzDecode: whatever arrives from the queue, decode neither panics nor
// yields an envelope the router would refuse, and never changes the body.
func FuzzDecode(f *testing.F) {
	for _, dir := range []string{"../../../../shared/testdata/stix"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b, "")
			}
		}
	}
	f.Add([]byte(`{"type": "snapshotrequest", "snapshot_type": 1, "snapshot_id": "x", "snapshot": 3}`), "id-1")
	f.Add([]byte(`{"type":"indicator"}`), "")
	f.Add([]byte(`{"type":"\u0069ndicator"}`), "")
	f.Add([]byte(`not json`), "")
	f.Fuzz(func(t *testing.T, body []byte, id string) {
		env, cause, err := decode(body, id, nil, func() string { return "gen" })
		if err != nil {
			if cause == "" {
				t.Fatalf("error without a cause: %v", err)
			}
			return
		}
		if id == "" && env.Id != "gen" || id != "" && env.Id != id {
			t.Fatalf("id %q from message-id %q", env.Id, id)
		}
		if err := env.Validate(); err != nil {
			t.Fatalf("decoded an envelope the router refuses: %v", err)
		}
		if string(env.Payload) != string(body) {
			t.Fatal("payload changed")
		}
	})
}

// TestServePublisherEndsWhenItsConfirmsEndFirst: a publisher session whose
// confirms end before it hears that its channel closed must still end, so
// that the publisher reconnects and Stop returns. It used to wait for the
// confirms reader a second time, forever: a cut connection, whose two
// notices come in either order, hung the publisher now and then.
func TestServePublisherEndsWhenItsConfirmsEndFirst(t *testing.T) {
	url := os.Getenv("TBTEST_AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	b := New()
	b.URL = config.Secret(url)
	b.ExchangeName = fmt.Sprintf("tbtest-internal-%d", time.Now().UnixNano())
	b.Queue.NameSuffix = b.ExchangeName
	if err := b.Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(b.cfg.queue, false, false, false)
			_ = ch.ExchangeDelete(b.ExchangeName, false, false)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := b.openPublisher(ctx)
	if err != nil {
		t.Fatalf("RabbitMQ at %s: %v", url, err)
	}
	if s.confirms == nil {
		t.Fatal("confirms are off by default?")
	}
	// The order in which a broken session reports its end is up to the
	// library and the scheduler: here the confirms end and the close
	// notification has not come yet.
	s.closed = make(chan *amqp.Error)
	r := &run{ctx: ctx, cancel: cancel, conns: map[string]*amqp.Connection{}}
	done := make(chan error, 1)
	go func() { done <- b.servePublisher(r, s) }()
	if err := s.ch.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the publisher session did not end within 5 s of its channel closing")
	}
}

// TestClassifyDial: what retrying cannot fix is a configuration error;
// everything else, an outage. The library turns a socket that failed during
// the login or connection.open into refused credentials or vhost (code
// 403); only the socket's own error tells them apart.
func TestClassifyDial(t *testing.T) {
	server := func(code int, reason string) error { return &amqp.Error{Code: code, Reason: reason, Server: true} }
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, c := range []struct {
		name   string
		err    error
		ioErr  error
		config bool
		want   string
	}{
		{"vhost not found", server(amqp.NotAllowed, "NOT_ALLOWED - vhost intel not found"), nil, true, "(check vhost)"},
		{"vhost connection limit", server(amqp.NotAllowed, "NOT_ALLOWED - access to vhost 'intel' refused for user 'tb': connection limit (2) is reached"), nil, false, "connection limit"},
		{"user connection limit", server(amqp.NotAllowed, "NOT_ALLOWED - Connection refused for user 'tb': user connection limit (1) is reached"), nil, false, "user connection limit"},
		{"no permissions on the vhost", server(amqp.NotAllowed, "NOT_ALLOWED - access to vhost 'intel' refused for user 'tb'"), nil, false, "refused"},
		{"vhost down", server(amqp.InternalError, "INTERNAL_ERROR - access to vhost 'intel' refused for user 'tb': vhost 'intel' is down"), nil, false, "is down"},
		{"access refused by the server", server(amqp.AccessRefused, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN"), nil, true, "access refused"},
		{"no shared SASL mechanism", amqp.ErrSASL, nil, true, "SASL"},
		{"login timed out", amqp.ErrCredentials, timeout, false, "at the login (connection.start-ok) without a reply from RabbitMQ: read tcp: i/o timeout"},
		{"login without an I/O error", amqp.ErrCredentials, nil, false, "without a reply"},
		{"connection.open timed out", amqp.ErrVhost, timeout, false, "at the connection.open without a reply"},
		{"connection.open cut", amqp.ErrVhost, reset, false, "connection reset by peer"},
		{"connection.open cut cleanly", amqp.ErrVhost, io.EOF, false, "EOF"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := classifyDial(c.err, c.ioErr)
			var ce *plugins.ConfigError
			if errors.As(err, &ce) != c.config || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("classifyDial = %v (configuration error: %t), want %q (configuration error: %t)", err, errors.As(err, &ce), c.want, c.config)
			}
		})
	}
	// Closed right after the login is RabbitMQ's refusal of a password, or
	// a cut: dial asks again.
	for _, ioErr := range []error{reset, io.EOF, io.ErrUnexpectedEOF} {
		if err := classifyDial(amqp.ErrCredentials, ioErr); !errors.Is(err, errClosedAtLogin) {
			t.Errorf("login closed by %v: %v, want errClosedAtLogin", ioErr, err)
		}
	}
}

// TestOutboxDropLarger: the messages above a size leave the buffer, sent or
// not, and are no longer waited for; the rest keep their order, and those
// sent before go out again first.
func TestOutboxDropLarger(t *testing.T) {
	var expired atomic.Uint64
	o := newOutbox(time.Hour, &expired)
	o.reopen()
	always := func() bool { return true }
	far := time.Now().Add(time.Hour)
	for _, c := range []struct {
		id   string
		size int
	}{{"a", 10}, {"big1", 101}, {"b", 100}, {"big2", 500}, {"c", 1}} {
		m := msg(c.id)
		m.pub.Body = make([]byte, c.size)
		if err := o.accept(m, 10, far, always); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ { // a, big1, b sent
		o.next(10)
	}
	sizes := o.dropLarger(100)
	if fmt.Sprint(sizes) != "[101 500]" {
		t.Fatalf("dropped sizes %v, want [101 500]", sizes)
	}
	if buffered, inTransit := o.sizes(); buffered != 3 || inTransit != 3 {
		t.Fatalf("sizes = %d, %d; want 3, 3", buffered, inTransit)
	}
	if n := o.resend(); n != 2 {
		t.Fatalf("resend = %d, want 2 (a and b)", n)
	}
	for _, want := range []string{"a", "b", "c"} {
		if m, ok := o.next(10); !ok || m.own.id != want {
			t.Fatalf("next = %v, want %s", m, want)
		}
	}
	if o.returned("big1") {
		t.Fatal("still waiting for a dropped message")
	}
}
