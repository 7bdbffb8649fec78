package actors

import (
	"testing"

	"github.com/threatbus/threatbus/messages"
)

func item(i int) outItem { return outItem{env: &messages.Envelope{Id: string(rune('a' + i))}} }

func TestRingQueueDropsOldestAndGrowsLazily(t *testing.T) {
	q := newRingQueue(40)
	if len(q.buf) != 0 {
		t.Fatal("allocated before use")
	}
	for i := 0; i < 40; i++ {
		if _, ev := q.push(item(i)); ev {
			t.Fatalf("evicted at %d", i)
		}
	}
	if len(q.buf) != 40 || q.len() != 40 {
		t.Fatalf("cap %d len %d", len(q.buf), q.len())
	}
	for i := 40; i < 45; i++ {
		old, ev := q.push(item(i))
		if !ev || old.env.Id != item(i-40).env.Id {
			t.Fatalf("push %d evicted %v %v, want the oldest", i, ev, old.env)
		}
	}
	// Taken in batches of up to 7, in order.
	var got []outItem
	for len(got) < 40 {
		before := len(got)
		got, _ = q.popN(got, 7)
		if len(got)-before != min(7, 40-before) {
			t.Fatalf("popN took %d at %d", len(got)-before, before)
		}
	}
	for i, it := range got {
		if it.env.Id != item(i+5).env.Id {
			t.Fatalf("pop %d: got %v, want %d", i, it.env, i+5)
		}
	}
	if out, closed := q.popN(nil, 7); len(out) != 0 || closed {
		t.Fatal("empty queue popped something or claims closed")
	}
	q.push(item(1))
	q.close()
	if out, _ := q.popN(nil, 7); len(out) != 1 {
		t.Fatal("close lost a queued item")
	}
	if out, closed := q.popN(nil, 7); len(out) != 0 || !closed {
		t.Fatal("drained closed queue not reported closed")
	}
}

func TestRingQueuePushEnvelopesEvictsOldest(t *testing.T) {
	q := newRingQueue(4)
	var envs []*messages.Envelope
	for i := 0; i < 6; i++ {
		envs = append(envs, item(i).env)
	}
	var evicted []string
	q.pushEnvelopes(envs, func(it outItem) { evicted = append(evicted, it.env.Id) })
	if len(evicted) != 2 || evicted[0] != "a" || evicted[1] != "b" {
		t.Fatalf("evicted %v, want [a b]", evicted)
	}
	out, _ := q.popN(nil, 10)
	if len(out) != 4 || out[0].env.Id != "c" || out[3].env.Id != "f" {
		t.Fatalf("left %d entries starting with %v", len(out), out[0].env)
	}
	select {
	case <-q.wake:
	default:
		t.Fatal("no wake-up for the writer")
	}
}
