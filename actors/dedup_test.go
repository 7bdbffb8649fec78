package actors

import (
	"fmt"
	"hash/maphash"
	"strconv"
	"testing"
)

// TestDedupWindowIsBounded: ids of any form are remembered for a window of
// n and then forgotten, i.e. delivered again rather than dropped.
func TestDedupWindowIsBounded(t *testing.T) {
	d := newDedup(3)
	for _, id := range []string{"a", "b", "c"} {
		if d.add(id) {
			t.Fatalf("%s: fresh id seen as duplicate", id)
		}
	}
	if !d.add("a") || !d.add("c") {
		t.Fatal("duplicates inside the window not caught")
	}
	d.add("d") // evicts a
	if d.add("a") {
		t.Fatal("id outside the window still remembered")
	}
	if n := len(d.other.slot); n != 3 {
		t.Fatalf("window holds %d ids, want 3", n)
	}
}

// TestDedupOriginWindow: the bus's own ids, per publishing process: in
// order, out of order within the window, replayed, too old, and a jump.
func TestDedupOriginWindow(t *testing.T) {
	const n = 128
	d := newDedup(n)
	g1, g2 := newIDGen(), newIDGen()
	id := func(g *idGen, c uint64) string { return g.prefix + strconv.FormatUint(c, 36) }
	for c := uint64(1); c <= 1000; c++ {
		if d.add(id(g1, c)) {
			t.Fatalf("fresh %d seen as duplicate", c)
		}
		if c%7 == 0 && !d.add(id(g1, c-3)) {
			t.Fatalf("replay of %d at %d not caught", c-3, c)
		}
		if d.add(id(g2, 2000-c)) { // another origin, counting down
			t.Fatalf("origin 2: fresh %d seen as duplicate", 2000-c)
		}
	}
	if !d.add(id(g1, 1000-n+1)) {
		t.Fatal("the oldest id of the window not caught")
	}
	if d.add(id(g1, 1000-n)) {
		t.Fatal("an id older than the window was dropped: it must be delivered")
	}
	// Out of order: 1010 before 1005.
	if d.add(id(g1, 1010)) || d.add(id(g1, 1005)) || !d.add(id(g1, 1005)) || !d.add(id(g1, 1010)) {
		t.Fatal("out-of-order ids within the window")
	}
	// A jump past the whole window forgets everything before it.
	if d.add(id(g1, 5000)) || d.add(id(g1, 1010)) || !d.add(id(g1, 5000)) {
		t.Fatal("after a jump")
	}
	// A jump within the window (over more than a word of the bitmap)
	// forgets only what it passes over.
	if d.add(id(g1, 4990)) || !d.add(id(g1, 4990)) {
		t.Fatal("setup")
	}
	if d.add(id(g1, 5100)) || !d.add(id(g1, 5000)) || !d.add(id(g1, 4990)) {
		t.Fatal("a jump within the window forgot what came before it")
	}
	for c := uint64(5001); c < 5100; c++ {
		if d.add(id(g1, c)) {
			t.Fatalf("%d, passed over by a jump, seen as duplicate", c)
		}
	}
	if len(d.origins) != 2 || len(d.other.slot) != 0 {
		t.Fatalf("%d origins, %d other ids", len(d.origins), len(d.other.slot))
	}
}

// TestDedupOriginsBounded: the origin least recently heard from makes room
// for a new one.
func TestDedupOriginsBounded(t *testing.T) {
	d := newDedup(64)
	gens := make([]*idGen, maxOrigins+1)
	for i := range gens {
		gens[i] = newIDGen()
		d.add(gens[i].next())
		if i == 0 {
			d.add(gens[0].next()) // seen again later below
		}
	}
	if len(d.origins) != maxOrigins {
		t.Fatalf("%d origins kept, want %d", len(d.origins), maxOrigins)
	}
	if _, ok := d.origins[gens[0].prefix[:16]]; ok {
		t.Fatal("the origin heard from least recently was kept")
	}
	if _, ok := d.origins[gens[maxOrigins].prefix[:16]]; !ok {
		t.Fatal("the newest origin is missing")
	}
}

// TestSplitID: only the exact form idGen writes takes the fast path, so
// distinct ids never share a prefix and counter.
func TestSplitID(t *testing.T) {
	g := newIDGen()
	for _, c := range []uint64{1, 35, 36, 1 << 40, 1<<64 - 1} {
		id := g.prefix + strconv.FormatUint(c, 36)
		p, got, ok := splitID(id)
		if !ok || got != c || p+"-" != g.prefix {
			t.Errorf("%s: %s %d %v", id, p, got, ok)
		}
	}
	for _, id := range []string{
		"", "x", g.prefix, g.prefix + "0", g.prefix + "01", g.prefix + "A", g.prefix + "a-",
		g.prefix + "3w5e11264sgsg", // 2^64
		"0123456789abcdeF-1", "0123456789abcde-1", "0123456789abcdef_1",
		"550e8400-e29b-41d4-a716-446655440000",
	} {
		if p, c, ok := splitID(id); ok {
			t.Errorf("%q accepted as %s %d", id, p, c)
		}
	}
}

// TestDedupHashCollision: an id of another form whose hash matches a
// remembered id's is not taken for a duplicate of it.
func TestDedupHashCollision(t *testing.T) {
	r := newRing(4)
	r.add("a")
	// Make "b" look, by its hash, like "a".
	r.slot[maphash.String(r.seed, "b")] = r.slot[maphash.String(r.seed, "a")]
	if r.add("b") {
		t.Fatal("a hash collision was taken for a duplicate")
	}
	if !r.add("b") {
		t.Fatal("b is not remembered")
	}
	for i := 0; i < 4; i++ { // pushes a and b out
		r.add(fmt.Sprint(i))
	}
	if len(r.slot) != 4 || r.add("b") {
		t.Fatalf("after the window moved on: %d remembered, b still a duplicate", len(r.slot))
	}
}
