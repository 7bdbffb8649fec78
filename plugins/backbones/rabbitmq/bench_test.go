package rabbitmq_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/rabbitmq"
	"github.com/threatbus/threatbus/tests/bustest"
)

// BenchmarkBus is sustained throughput through a real bus on the RabbitMQ
// backbone, the same path as actors' BenchmarkFanOut with one subscriber
// (type peek, envelope, router, backbone) plus the broker: exchange, this
// host's queue, consumer, router, subscriber, sink. One op is one message
// published and delivered. "reliable" is publisher confirms with persistent
// messages on a durable queue (the default); "fast" turns confirms and
// persistence off. max_in_flight 0 (the default) waits for each message's
// round trip; a large one pipelines.
func BenchmarkBus(b *testing.B) {
	for _, mode := range []struct {
		name      string
		configure func(*rabbitmq.Backbone)
	}{
		{"reliable", func(*rabbitmq.Backbone) {}},
		{"fast", func(bb *rabbitmq.Backbone) { bb.Confirm, bb.Persistent = false, false }},
	} {
		for _, inFlight := range []int{0, 10000} {
			b.Run(fmt.Sprintf("%s/max_in_flight=%d", mode.name, inFlight), func(b *testing.B) {
				n := newNames(b)
				bb := newBackbone(b, n, func(bb *rabbitmq.Backbone) {
					mode.configure(bb)
					bb.MaxInFlight = inFlight
				})
				bus := bustest.Start(b, bb, bustest.Options{Configure: func(c *config.Config) { c.Bus.Outbox = 1 << 22 }})
				payload := bustest.Indicator(b, 1)
				var delivered atomic.Int64
				var want atomic.Int64
				done := make(chan struct{})
				sink := func(context.Context, *messages.Envelope) error {
					if delivered.Add(1) == want.Load() {
						close(done)
					}
					return nil
				}
				if _, err := bus.Bus.Subscribe(context.Background(), plugins.SubscribeRequest{Topics: []string{messages.TopicIndicator}, Sink: sink}); err != nil {
					b.Fatal(err)
				}
				want.Store(int64(b.N))
				b.ReportAllocs()
				b.ResetTimer()
				t0 := time.Now()
				for i := 0; i < b.N; i++ {
					if err := bus.Bus.Publish(context.Background(), payload); err != nil {
						b.Fatal(err)
					}
				}
				select {
				case <-done:
				case <-time.After(5 * time.Minute):
					b.Fatalf("delivered %d of %d", delivered.Load(), b.N)
				}
				elapsed := time.Since(t0)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
				if d := bus.Daemon.Stats().Drops; len(d) > 0 {
					b.Fatalf("drops during the benchmark: %v", d)
				}
			})
		}
	}
}
