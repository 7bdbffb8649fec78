package actors

import (
	"strconv"
	"testing"
)

// BenchmarkDedup: the router's per-delivery check with a full window of
// ids shaped like the bus's own.
func BenchmarkDedup(b *testing.B) {
	g := newIDGen()
	ids := make([]string, 1<<20)
	for i := range ids {
		ids[i] = g.next()
	}
	d := newDedup(1 << 16)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d.add(ids[i&(len(ids)-1)]) && i < len(ids) {
			b.Fatal("fresh id seen as duplicate " + strconv.Itoa(i))
		}
	}
}
