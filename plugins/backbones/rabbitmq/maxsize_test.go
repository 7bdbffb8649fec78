package rabbitmq_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins/backbones/rabbitmq"
	"github.com/threatbus/threatbus/tests/bustest"
)

// sized is an indicator envelope whose body is exactly size bytes.
func sized(t *testing.T, size int, id string) *messages.Envelope {
	t.Helper()
	head, tail := []byte(`{"type":"indicator","x_pad":"`), []byte(`"}`)
	if size < len(head)+len(tail) {
		t.Fatalf("size %d too small", size)
	}
	body := make([]byte, 0, size)
	body = append(body, head...)
	body = append(body, bytes.Repeat([]byte("x"), size-len(head)-len(tail))...)
	body = append(body, tail...)
	return &messages.Envelope{Version: messages.EnvelopeVersion_ENVELOPE_VERSION_1, Id: id, Topic: messages.TopicIndicator, Type: "indicator", Payload: body, Origin: "test"}
}

// TestPublishRefusesAboveMaxMessageSize: Publish refuses a body above
// max_message_size (the bus counts the drop), by default RabbitMQ 4's
// max_message_size of 16 MiB; up to it the size is no reason to refuse.
// No broker needed: the size is checked before anything else.
func TestPublishRefusesAboveMaxMessageSize(t *testing.T) {
	for _, c := range []struct {
		name  string
		limit int // 0: the default
	}{
		{"default", 0},
		{"configured", 4096},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := rabbitmq.New()
			b.Queue.NameSuffix = "size-test"
			if c.limit > 0 {
				b.MaxMessageSize = c.limit
			}
			if err := b.Init(); err != nil {
				t.Fatal(err)
			}
			limit := b.MaxMessageSize
			if c.limit == 0 && limit != 16<<20 {
				t.Fatalf("default max_message_size %d, want 16 MiB", limit)
			}
			err := b.Publish(context.Background(), sized(t, limit+1, "too-large"))
			if err == nil || !strings.Contains(err.Error(), "exceeds max_message_size") {
				t.Fatalf("publish of %d bytes: %v, want refused for its size", limit+1, err)
			}
			// Not started, so refused, but not for its size.
			if err := b.Publish(context.Background(), sized(t, limit, "fits")); err == nil || strings.Contains(err.Error(), "max_message_size") {
				t.Fatalf("publish of %d bytes: %v, want refused only because the backbone is not started", limit, err)
			}
		})
	}
}

// brokerMaxMessageSize reads the broker's max_message_size. It only reads:
// other tests and other people share the broker.
func brokerMaxMessageSize(t *testing.T) int {
	t.Helper()
	out := rabbitmqctl(t, "eval", "application:get_env(rabbit, max_message_size).")
	var n int
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "{ok,%d}", &n); err != nil {
		t.Fatalf("the broker's max_message_size: %q: %v", out, err)
	}
	if n >= 512<<20 {
		t.Fatalf("the broker's max_message_size is %d, RabbitMQ's largest: no message can exceed it", n)
	}
	return n
}

// TestBrokerRefusesTooLargeMessage: with max_message_size above the
// broker's, a message between the two is refused by RabbitMQ, which closes
// the publisher's channel. Sent again it would be refused again, forever,
// with everything behind it; instead it is dropped (counted, logged once
// with the sizes), what was behind it arrives, and Publish refuses such
// messages from then on.
func TestBrokerRefusesTooLargeMessage(t *testing.T) {
	limit := brokerMaxMessageSize(t)
	n := newNames(t)
	b := newBackbone(t, n, func(b *rabbitmq.Backbone) { b.MaxMessageSize = limit + 1 })
	var logs bustest.SyncBuffer
	b.SetLogger(testLogger(&logs))
	col := newCollector()
	start(t, b, col.deliver)

	big := sized(t, limit+1, "big")
	var small []string
	for i := 0; i < 6; i++ {
		if i == 3 {
			if err := b.Publish(context.Background(), big); err != nil {
				t.Fatalf("publish of %d bytes: %v", limit+1, err)
			}
		}
		id := fmt.Sprintf("small-%d", i)
		small = append(small, id)
		if err := b.Publish(context.Background(), envelope(t, bustest.Indicator(t, i), id)); err != nil {
			t.Fatal(err)
		}
	}
	arrived := func() map[string]bool {
		got := map[string]bool{}
		for _, env := range col.all() {
			got[env.Id] = true
		}
		return got
	}
	eventually(t, 15*time.Second, "the messages around the refused one", func() bool {
		got := arrived()
		for _, id := range small {
			if !got[id] {
				return false
			}
		}
		return true
	})
	eventually(t, 5*time.Second, "an empty buffer", func() bool { return b.Stats().Buffered == 0 })
	if arrived()["big"] {
		t.Fatal("the refused message arrived")
	}
	if st := b.Stats(); st.Dropped["too_large"] != 1 {
		t.Fatalf("dropped %v, want too_large 1", st.Dropped)
	}
	var errorLines []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			errorLines = append(errorLines, line)
		}
	}
	if len(errorLines) != 1 || !strings.Contains(errorLines[0], fmt.Sprintf("size=%d broker_max_message_size=%d", limit+1, limit)) {
		t.Fatalf("want one error line with the sizes, got:\n%s", strings.Join(errorLines, "\n"))
	}

	// RabbitMQ's limit is known now: Publish refuses above it (the same
	// body: making another of 128 MiB costs seconds under -race), and what
	// fits goes on.
	big2 := &messages.Envelope{Version: big.Version, Id: "big-2", Topic: big.Topic, Type: big.Type, Payload: big.Payload, Origin: big.Origin}
	if err := b.Publish(context.Background(), big2); err == nil || !strings.Contains(err.Error(), "RabbitMQ's max_message_size") {
		t.Fatalf("publish of %d bytes once RabbitMQ refused that size: %v", limit+1, err)
	}
	if err := b.Publish(context.Background(), envelope(t, bustest.Indicator(t, 99), "after")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the message after", func() bool { return arrived()["after"] })
	if err := b.Ready(); err != nil {
		t.Fatal(err)
	}
}
