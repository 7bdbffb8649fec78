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
	for i := 5; i < 45; i++ {
		it, ok, _ := q.pop()
		if !ok || it.env.Id != item(i).env.Id {
			t.Fatalf("pop: got %v, want %d", it.env, i)
		}
	}
	if _, ok, closed := q.pop(); ok || closed {
		t.Fatal("empty queue popped something or claims closed")
	}
	q.push(item(1))
	q.close()
	if _, ok, _ := q.pop(); !ok {
		t.Fatal("close lost a queued item")
	}
	if _, ok, closed := q.pop(); ok || !closed {
		t.Fatal("drained closed queue not reported closed")
	}
}
