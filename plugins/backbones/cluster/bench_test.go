package cluster_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkCrossMember measures cross-member throughput: one member
// publishes b.N indicators (generated inside it, so stdin is not what is
// measured) to a cluster of 1 or 2 other members, each a separate process
// on loopback; the clock stops when every receiving member's subscriber has
// them all. msgs/s is per receiving member; deliveries/s counts every
// receiver.
func BenchmarkCrossMember(b *testing.B) {
	for _, receivers := range []int{1, 2} {
		b.Run(fmt.Sprintf("receivers=%d", receivers), func(b *testing.B) {
			nodes := loopbackNodes(b, 1+receivers)
			name := fmt.Sprintf("bench-%d", time.Now().UnixNano())
			env := []string{"TESTBUS_COUNT_ONLY=1"}
			ps := make([]*proc, len(nodes))
			for i, n := range nodes {
				// Outboxes large enough that no subscriber drops (what is
				// measured is the transport, not a slow sink).
				conf := strings.Replace(automanagedConf(name, n, nodes), "[bus]\n", "[bus]\noutbox = 4000000\n", 1)
				ps[i] = startProc(b, fmt.Sprintf("member-%d", i), conf, env)
			}
			waitFormed(b, 40*time.Second, ps...)
			count := func(p *proc) int {
				p.Send(b, "#")
				select {
				case s := <-p.count:
					n, _ := strconv.Atoi(s)
					return n
				case <-time.After(10 * time.Second):
					b.Fatalf("%s: no count", p.name)
				}
				return 0
			}
			b.ResetTimer()
			start := time.Now()
			ps[0].Send(b, fmt.Sprintf("!flood %d", b.N))
			deadline := time.Now().Add(2 * time.Minute)
			for _, p := range ps[1:] {
				for count(p) < b.N {
					if time.Now().After(deadline) {
						st, _ := p.tryStatus(5 * time.Second)
						b.Fatalf("%s: %d of %d delivered after 2m; status %+v", p.name, count(p), b.N, st)
					}
					time.Sleep(2 * time.Millisecond)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N*receivers)/elapsed.Seconds(), "deliveries/s")
		})
	}
}
