package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages"
)

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// dropped sums the "dropped" attribute of the WARN lines that report
// reason, and counts them.
func (l *logRecorder) dropped(reason string) (n uint64, lines int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		var rs string
		var d uint64
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "reason":
				rs = a.Value.String()
			case "dropped":
				d = a.Value.Uint64()
			}
			return true
		})
		if r.Level == slog.LevelWarn && rs == reason {
			n += d
			lines++
		}
	}
	return n, lines
}

// oneRun is a started backbone with one peer and no cluster member: what
// Publish queues for the peer stays queued (its sender waits for a member
// to send through), and Stop works.
func oneRun(t *testing.T, buffer int) (*Backbone, *peer, *logRecorder) {
	t.Helper()
	rec := &logRecorder{}
	b := newDefaults()
	b.Buffer = buffer
	b.SetLogger(slog.New(rec))
	b.cfg = &settings{}
	r := &run{b: b, deliver: func(*messages.Envelope) {}, members: map[string]memberView{}, peers: map[string]*peer{},
		rejoin: make(chan rejoinReq, 1), stop: make(chan struct{})}
	p := newPeer("peer-1", "127.0.0.1:1", b.Buffer)
	r.peers[p.id] = p
	go r.send(p)
	b.run = r
	return b, p, rec
}

func testEnvelope(id string, payload int) *messages.Envelope {
	return &messages.Envelope{Version: messages.EnvelopeVersion_ENVELOPE_VERSION_1, Id: id, Topic: messages.TopicIndicator,
		Type: messages.TypeIndicator, Payload: []byte(`{"type":"indicator","x_pad":"` + strings.Repeat("a", payload) + `"}`)}
}

// TestOverflowLogged: forwards dropped because a peer's queue is full are
// counted and logged at WARN with the peer and the number dropped: the
// first at once, the rest summed into at most one line per interval, and
// what is left unlogged when the member stops. (They were only counted.)
func TestOverflowLogged(t *testing.T) {
	b, p, rec := oneRun(t, 1)
	for i := 0; i < 10; i++ {
		if err := b.Publish(context.Background(), testEnvelope("e"+string(rune('0'+i)), 10)); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Status(); st.Dropped["overflow"] != 9 || p.drops()["overflow"] != 9 {
		t.Fatalf("dropped %v, peer %v: want 9 overflow", st.Dropped, p.drops())
	}
	if n, lines := rec.dropped("overflow"); n != 1 || lines != 1 {
		t.Fatalf("logged %d overflow drops in %d lines before the interval ended, want the first one at once", n, lines)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = b.Stop(ctx) // the queued one is unacknowledged: an error
	if n, lines := rec.dropped("overflow"); n != 9 || lines != 2 {
		t.Fatalf("logged %d overflow drops in %d lines by the end of Stop, want 9 in 2", n, lines)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.recs {
		if r.Level == slog.LevelWarn {
			var peer string
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "peer" {
					peer = a.Value.String()
				}
				return true
			})
			if peer != p.id {
				t.Errorf("drop line %q names peer %q, want %q", r.Message, peer, p.id)
			}
		}
	}
}

// TestTooLargeDropped: an envelope that a Forward could never carry (over
// maxForwardBytes on the wire) is delivered locally, not queued for any
// peer, counted as too_large and logged; smaller ones around it are queued.
// (It was queued, and the batch it was in was refused by the receiving
// member's gRPC server and sent again forever.)
func TestTooLargeDropped(t *testing.T) {
	b, p, rec := oneRun(t, 100)
	for i, size := range []int{100, 4 << 20, 100} {
		if err := b.Publish(context.Background(), testEnvelope("e"+string(rune('0'+i)), size)); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Status(); st.Dropped["too_large"] != 1 || p.q.len() != 2 {
		t.Fatalf("dropped %v, queued %d: want 1 too_large and the 2 others queued", st.Dropped, p.q.len())
	}
	if n, _ := rec.dropped("too_large"); n != 1 {
		t.Fatalf("logged %d too_large drops, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = b.Stop(ctx)
}
