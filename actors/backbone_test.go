package actors

import (
	"sync"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages"
)

// TestCoalescer: deliveries made while a batch is published go on as one
// Deliver when it is done, in order; others go on at once; a held batch
// never grows past maxHeld.
func TestCoalescer(t *testing.T) {
	var sent []*messages.Deliver
	c := &coalescer{send: func(d *messages.Deliver) { sent = append(sent, d) }}
	env := func(i int) *messages.Envelope { return &messages.Envelope{Id: string(rune('a' + i))} }

	c.deliver(env(0))
	if len(sent) != 1 || len(sent[0].Envelopes) != 1 {
		t.Fatalf("not holding: %v", sent)
	}
	c.hold()
	for i := 1; i < 4; i++ {
		c.deliver(env(i))
	}
	if len(sent) != 1 {
		t.Fatal("sent while holding")
	}
	c.release()
	if len(sent) != 2 || len(sent[1].Envelopes) != 3 || sent[1].Envelopes[0].Id != "b" || sent[1].Envelopes[2].Id != "d" {
		t.Fatalf("released %v", sent[1:])
	}
	c.release() // nothing held: nothing sent
	if len(sent) != 2 {
		t.Fatal("an empty batch was sent")
	}

	sent = nil
	c.hold()
	for i := 0; i < maxHeld+1; i++ {
		c.deliver(env(i % 26))
	}
	if len(sent) != 1 || len(sent[0].Envelopes) != maxHeld {
		t.Fatalf("held past maxHeld: %d batches", len(sent))
	}
	c.release()
	if len(sent) != 2 || len(sent[1].Envelopes) != 1 {
		t.Fatal("the rest was not released")
	}

	// A hold that lasts (a plugin blocked in Publish) lets go after each
	// Publish call past maxHold.
	sent = nil
	c.hold()
	c.deliver(env(0))
	c.tick()
	if len(sent) != 0 {
		t.Fatal("released before maxHold")
	}
	time.Sleep(2 * maxHold)
	c.tick()
	if len(sent) != 1 {
		t.Fatal("held past maxHold")
	}
	c.deliver(env(1))
	c.release()
	if len(sent) != 2 {
		t.Fatal("not released at the end")
	}
}

// TestCoalescerConcurrentOrder: deliveries from another goroutine keep
// their order across holds and releases.
func TestCoalescerConcurrentOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	c := &coalescer{send: func(d *messages.Deliver) {
		mu.Lock()
		for _, e := range d.Envelopes {
			got = append(got, e.Id)
		}
		mu.Unlock()
	}}
	const n = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			c.deliver(&messages.Envelope{Id: string(rune(i))})
		}
	}()
	for {
		select {
		case <-done:
			c.release()
			if len(got) != n {
				t.Fatalf("%d delivered, want %d", len(got), n)
			}
			for i, id := range got {
				if id != string(rune(i)) {
					t.Fatalf("delivery %d out of order", i)
				}
			}
			return
		default:
			c.hold()
			c.release()
		}
	}
}
