package actors

// dedup remembers the last n message ids, so a transport that redelivers
// (RabbitMQ after a reconnect, a cluster forward that is retried) cannot make
// the router deliver a message twice. Memory is bounded by n.
type dedup struct {
	seen map[string]struct{}
	ring []string
	next int
}

func newDedup(n int) *dedup {
	return &dedup{seen: make(map[string]struct{}, n), ring: make([]string, n)}
}

// add records id and reports whether it was already in the window.
func (d *dedup) add(id string) (duplicate bool) {
	if _, ok := d.seen[id]; ok {
		return true
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.seen, old)
	}
	d.ring[d.next] = id
	d.seen[id] = struct{}{}
	d.next = (d.next + 1) % len(d.ring)
	return false
}
