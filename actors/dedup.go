package actors

import (
	"hash/maphash"
	"math/bits"
)

// dedup remembers recent message ids, so a transport that redelivers
// (RabbitMQ after a reconnect, a cluster forward that is retried) cannot make
// the router deliver a message twice. Memory is bounded.
//
// It is on the path of every delivery. Ids made by idGen, "<16 hex
// digits>-<counter in base 36>", are counted up per bus process, so for
// them it keeps a sliding window per process (as IPsec and DTLS do against
// replays): a bitmap of the last n counters below the highest seen, a few
// nanoseconds and no cache miss per message. Any other id goes to a ring of
// the last n such ids with a hashed index. Both forget rather than guess:
// an id they no longer remember is delivered, never dropped.
type dedup struct {
	n       int
	origins map[string]*window
	last    *window // the origin of the previous id: most often the next one's
	tick    uint64  // counts adds, for evicting the origin least recently seen
	other   *ring
}

// maxOrigins bounds the windows kept: each bus process that published
// recently has one (of n/8 bytes: 8 KiB for the default window, 2 MiB for
// all of them); the one heard from least recently goes first.
const maxOrigins = 256

// window is one publishing process's recent counters.
type window struct {
	prefix string
	max    uint64   // the highest counter seen
	bits   []uint64 // bit c mod size set: counter c, in (max-size, max], was seen
	used   uint64   // dedup.tick when last used
}

func newDedup(n int) *dedup {
	return &dedup{n: n, origins: map[string]*window{}, other: newRing(n)}
}

// add records id and reports whether it was already seen.
func (d *dedup) add(id string) (duplicate bool) {
	prefix, counter, ok := splitID(id)
	if !ok {
		return d.other.add(id)
	}
	d.tick++
	w := d.last
	if w == nil || w.prefix != prefix {
		w = d.origin(prefix)
		d.last = w
	}
	w.used = d.tick
	return w.add(counter)
}

func (d *dedup) origin(prefix string) *window {
	if w, ok := d.origins[prefix]; ok {
		return w
	}
	if len(d.origins) >= maxOrigins {
		var oldest *window
		for _, w := range d.origins {
			if oldest == nil || w.used < oldest.used {
				oldest = w
			}
		}
		delete(d.origins, oldest.prefix)
	}
	w := &window{prefix: prefix, bits: make([]uint64, (d.n+63)/64)}
	d.origins[prefix] = w
	return w
}

func (w *window) add(c uint64) (duplicate bool) {
	size := uint64(len(w.bits)) * 64
	switch {
	case c > w.max:
		// The window slides up to c: counters it passes were not seen.
		if c-w.max >= size {
			clear(w.bits)
		} else {
			for x := w.max + 1; x < c; {
				if x%64 == 0 && c-x >= 64 { // a whole word at once
					w.bits[(x%size)/64] = 0
					x += 64
					continue
				}
				w.bits[(x%size)/64] &^= 1 << (x % 64)
				x++
			}
		}
		w.max = c
	case w.max-c >= size:
		return false // too old to be remembered
	case w.bits[(c%size)/64]&(1<<(c%64)) != 0:
		return true
	}
	w.bits[(c%size)/64] |= 1 << (c % 64)
	return false
}

// splitID splits an id made by idGen into its prefix and counter. It accepts
// only the exact form idGen writes (lowercase hex, canonical base 36), so
// that no two distinct ids map to the same prefix and counter.
func splitID(id string) (prefix string, counter uint64, ok bool) {
	const hexLen = 16
	if len(id) < hexLen+2 || len(id) > hexLen+1+13 || id[hexLen] != '-' {
		return "", 0, false
	}
	for i := 0; i < hexLen; i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", 0, false
		}
	}
	digits := id[hexLen+1:]
	if digits[0] == '0' { // idGen starts at 1 and writes no leading zeros
		return "", 0, false
	}
	for i := 0; i < len(digits); i++ {
		var v uint64
		switch c := digits[i]; {
		case '0' <= c && c <= '9':
			v = uint64(c - '0')
		case 'a' <= c && c <= 'z':
			v = uint64(c-'a') + 10
		default:
			return "", 0, false
		}
		hi, lo := bits.Mul64(counter, 36)
		if hi != 0 || lo+v < lo {
			return "", 0, false // overflows: not one of ours
		}
		counter = lo + v
	}
	return id[:hexLen], counter, true
}

// ring remembers the last n ids of other forms. Its map is keyed by a hash
// of the id, confirmed against the id itself, so two ids with the same hash
// are never taken for each other.
type ring struct {
	seed   maphash.Seed
	slot   map[uint64]uint32 // hash of an id → its index in ids
	ids    []string          // the last n ids, oldest at next once full
	hashes []uint64
	next   int
}

func newRing(n int) *ring {
	return &ring{seed: maphash.MakeSeed(), slot: map[uint64]uint32{}, ids: make([]string, n), hashes: make([]uint64, n)}
}

func (r *ring) add(id string) (duplicate bool) {
	h := maphash.String(r.seed, id)
	if i, ok := r.slot[h]; ok && r.ids[i] == id {
		return true
	}
	if r.ids[r.next] != "" { // full: forget the oldest
		if old := r.hashes[r.next]; r.slot[old] == uint32(r.next) {
			delete(r.slot, old)
		}
	}
	r.ids[r.next], r.hashes[r.next] = id, h
	r.slot[h] = uint32(r.next)
	r.next = (r.next + 1) % len(r.ids)
	return false
}
