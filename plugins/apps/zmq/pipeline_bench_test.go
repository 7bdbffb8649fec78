package zmq_test

import (
	"testing"
	"time"

	"github.com/threatbus/threatbus/tests/bustest"
)

// BenchmarkPipeline drives the whole app in one process over loopback
// sockets: a client publishes indicators on the sub port, the bus routes
// them, and a subscribed client receives every one on the pub port. The
// bus has no back-pressure from subscribers to publishers (a slow one loses
// its oldest messages, counted), so the publisher keeps at most window
// messages in flight: what is measured is throughput without loss.
func BenchmarkPipeline(b *testing.B) {
	e := startB(b)
	a := e.subscribeB(b, "stix2/indicator")
	p := e.publisherB(b)
	payload := bustest.Indicator(b, 1)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	const window = 1000
	credit := make(chan struct{}, window)
	for i := 0; i < window; i++ {
		credit <- struct{}{}
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		for i := 0; i < b.N; i++ {
			if _, _, err := a.Receive(timeout); err != nil {
				done <- err
				return
			}
			credit <- struct{}{}
		}
		done <- nil
	}()
	for i := 0; i < b.N; i++ {
		select {
		case <-credit:
		case err := <-done:
			b.Fatalf("receiver stopped: %v", err)
		}
		if err := p.Publish("stix2/indicator", payload); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
