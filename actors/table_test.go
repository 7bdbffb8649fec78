package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

func TestTablePrefixMatchOncePerSubscriber(t *testing.T) {
	tb := newTable()
	a, b, c := actor.NewPID("x", "a"), actor.NewPID("x", "b"), actor.NewPID("x", "c")
	if !tb.add(a, []string{"stix2/indicator", "stix2/", ""}) || !tb.add(b, []string{"stix2/sighting"}) || !tb.add(c, []string{"threatbus/"}) {
		t.Fatal("new subscribers not reported as new")
	}
	if tb.add(a, []string{"stix2"}) {
		t.Fatal("existing subscriber reported as new")
	}
	count := func(topic string) map[string]int {
		m := map[string]int{}
		for _, p := range tb.match(topic) {
			m[p.Id]++
		}
		return m
	}
	if got := fmt.Sprint(count("stix2/indicator")); got != "map[a:1]" {
		t.Fatalf("indicator: %s", got)
	}
	if got := fmt.Sprint(count("stix2/sighting")); got != "map[a:1 b:1]" {
		t.Fatalf("sighting: %s", got)
	}
	if got := fmt.Sprint(count("threatbus/snapshotrequest")); got != "map[a:1 c:1]" {
		t.Fatalf("snapshotrequest: %s", got)
	}
	// Removing some topics keeps the others; the cache follows.
	if tb.remove(a, []string{"stix2/indicator", "stix2/", ""}) {
		t.Fatal("a still holds stix2")
	}
	if got := fmt.Sprint(count("threatbus/snapshotrequest")); got != "map[c:1]" {
		t.Fatalf("after remove: %s", got)
	}
	if got := fmt.Sprint(count("stix2/indicator")); got != "map[a:1]" {
		t.Fatalf("after remove, stix2 left: %s", got)
	}
	if !tb.remove(a, nil) || tb.len() != 2 || tb.has(a) {
		t.Fatal("remove all")
	}
	if !tb.remove(a, nil) {
		t.Fatal("removing an unknown subscriber must report it gone")
	}
}

func TestIDsAreUnique(t *testing.T) {
	g1, g2 := newIDGen(), newIDGen()
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		for _, id := range []string{g1.next(), g2.next()} {
			if seen[id] {
				t.Fatalf("duplicate id %s", id)
			}
			seen[id] = true
		}
	}
}

func TestBackoffDoublesToCapWithJitter(t *testing.T) {
	min, max := 100*time.Millisecond, 2*time.Second
	for n, want := range map[int]time.Duration{1: min, 2: 2 * min, 3: 4 * min, 5: 16 * min, 6: max, 50: max} {
		for i := 0; i < 20; i++ {
			d := backoff(n, min, max)
			if d < want*8/10 || d > want*12/10 {
				t.Fatalf("backoff(%d) = %s, want %s ±20%%", n, d, want)
			}
		}
	}
}
