package actors_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/inmem"
	"github.com/threatbus/threatbus/tests/bustest"
)

// BenchmarkFanOut publishes through the router to N subscribers of the
// topic: one op is one publish, delivered N times. deliveries/s is the
// figure that matters; ns/delivery should stay flat as N grows.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			bus := bustest.Start(b, &inmem.Backbone{}, bustest.Options{Configure: func(c *config.Config) { c.Bus.Outbox = 1 << 22 }})
			payload := bustest.Indicator(b, 1)
			var delivered atomic.Int64
			done := make(chan struct{})
			var want atomic.Int64
			sink := func(context.Context, *messages.Envelope) error {
				if delivered.Add(1) == want.Load() {
					close(done)
				}
				return nil
			}
			subs := make([]plugins.Subscription, n)
			for i := range subs {
				s, err := bus.Bus.Subscribe(context.Background(), plugins.SubscribeRequest{Topics: []string{messages.TopicIndicator}, Sink: sink})
				if err != nil {
					b.Fatal(err)
				}
				subs[i] = s
			}
			want.Store(int64(b.N) * int64(n))
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
				b.Fatalf("delivered %d of %d", delivered.Load(), want.Load())
			}
			elapsed := time.Since(t0)
			b.StopTimer()
			total := float64(b.N) * float64(n)
			b.ReportMetric(total/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(float64(elapsed.Nanoseconds())/total, "ns/delivery")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "publishes/s")
			if d := bus.Daemon.Stats().Drops; len(d) > 0 {
				b.Fatalf("drops during the benchmark: %v", d)
			}
		})
	}
}
