package rabbitmq_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins/backbones/rabbitmq"
	"github.com/threatbus/threatbus/tests/bustest"
)

// TestServerClosesConnectionsUnderLoad runs a real bus on a durable queue
// with confirms while RabbitMQ closes the backbone's connections from the
// server side (rabbitmqctl close_connection, the same as
// close_all_connections but only for this test's connections) twice
// mid-stream. Every message published before, during and after arrives at
// the subscriber exactly once: what was unconfirmed is published again and
// what was unacknowledged is delivered again (at least once), and the
// router's de-duplication removes the copies, which are counted.
func TestServerClosesConnectionsUnderLoad(t *testing.T) {
	for _, c := range []struct {
		name        string
		maxInFlight int
		burst       int // messages published at once, every burst milliseconds
	}{
		{"max_in_flight=0", 0, 1},
		{"max_in_flight=1000", 1000, 50},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newNames(t)
			b := newBackbone(t, n, func(b *rabbitmq.Backbone) { b.MaxInFlight = c.maxInFlight })
			underLoad(t, b, c.burst, func() int { return closeConnections(t, n.queue()) })
		})
	}
}

// TestNetworkCutUnderLoad is the same with the connections cut on the
// network (a proxy drops them) while a thousand messages are in flight:
// copies are all but certain, and all of them are removed.
func TestNetworkCutUnderLoad(t *testing.T) {
	n := newNames(t)
	p := newProxy(t, nil)
	b := newBackbone(t, n, func(b *rabbitmq.Backbone) {
		b.URL = config.Secret("amqp://guest:guest@" + p.addr() + "/")
		b.MaxInFlight = 1000
	})
	underLoad(t, b, 3000, func() int {
		p.cut()
		time.Sleep(50 * time.Millisecond)
		p.resume()
		return 2
	})
}

// underLoad publishes 3000 messages through a bus on b, burst at a time
// every burst milliseconds, and interrupts the connections twice while the
// backbone sends (interrupt returns how many connections it broke). Every
// message must reach the subscriber once; the copies the backbone delivered
// must be exactly those the router removed.
func underLoad(t *testing.T, b *rabbitmq.Backbone, burst int, interrupt func() int) {
	t.Helper()
	const total = 3000
	payloads := make([][]byte, total)
	for i := range payloads {
		payloads[i] = bustest.Indicator(t, i)
	}
	// A failure here is a timing window that shows only on a busy machine:
	// say what was missing and what the backbone did.
	var log bustest.SyncBuffer
	b.SetLogger(testLogger(&log))
	rec := bustest.NewRecorder("sub")
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var missing []int
		for i, p := range payloads {
			if rec.Count(p) == 0 {
				missing = append(missing, i)
			}
		}
		if len(missing) > 20 {
			missing = append(missing[:10], missing[len(missing)-10:]...)
		}
		t.Logf("missing (first and last ten): %v\nbackbone stats: %+v\nready: %v\nlog:\n%s", missing, b.Stats(), b.Ready(), log.String())
	})
	bus := bustest.Start(t, b, bustest.Options{Log: &log})
	bus.Subscribe(t, rec, messages.TopicIndicator)

	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Duration(burst) * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < total; i++ {
			if i%burst == 0 {
				<-tick.C
			}
			bus.Publish(t, payloads[i])
		}
	}()
	closes := 0
	for _, at := range []uint64{total / 4, total / 2} {
		eventually(t, 30*time.Second, fmt.Sprintf("%d messages sent", at), func() bool { return b.Stats().Sent >= at })
		closes += interrupt()
		eventually(t, 15*time.Second, "the backbone to reconnect", func() bool { return b.Ready() == nil })
	}
	<-done
	rec.WaitLen(t, total)
	rec.Quiet(t, total, 500*time.Millisecond)
	for i := 0; i < total; i++ {
		if got := rec.Count(payloads[i]); got != 1 {
			t.Fatalf("message %d arrived %d times, want once", i, got)
		}
	}
	st := b.Stats()
	removed := bus.Daemon.Stats().Deduplicated["router"]
	t.Logf("%d messages; %d connections broken; backbone: sent %d (resent %d), confirmed %d, delivered to the router %d (redelivered flag %d); router removed %d duplicates",
		total, closes, st.Sent, st.Resent, st.Confirmed, st.Delivered, st.Redelivered, removed)
	if closes < 4 || st.Disconnects < 4 {
		t.Fatalf("broke %d connections, the backbone saw %d disconnects; want both links broken twice", closes, st.Disconnects)
	}
	if st.Delivered-total != removed {
		t.Fatalf("the backbone delivered %d copies beyond the %d messages, the router removed %d", st.Delivered-total, total, removed)
	}
	if drops := bus.Daemon.Stats().Drops; len(drops) > 0 {
		t.Fatalf("drops: %v", drops)
	}
}

// TestBackboneActorRestarts: when the bus restarts the backbone's actor (a
// crash), the plugin is stopped and started again: nothing published
// around the restarts is lost or delivered twice.
func TestBackboneActorRestarts(t *testing.T) {
	n := newNames(t)
	b := newBackbone(t, n, nil)
	bus := bustest.Start(t, b, bustest.Options{Configure: func(c *config.Config) { c.Chaos.Enabled = true }})
	rec := bustest.NewRecorder("sub")
	bus.Subscribe(t, rec, messages.TopicSighting)
	const total = 1000
	payloads := make([][]byte, total)
	for i := range payloads {
		payloads[i] = bustest.Sighting(t, i)
	}
	var published atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < total; i++ {
			bus.Publish(t, payloads[i])
			published.Add(1)
			time.Sleep(500 * time.Microsecond)
		}
	}()
	for _, at := range []int64{total / 3, 2 * total / 3} {
		eventually(t, 30*time.Second, fmt.Sprintf("%d messages published", at), func() bool { return published.Load() >= at })
		if err := bus.Daemon.Crash("backbone"); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	rec.WaitLen(t, total)
	rec.Quiet(t, total, 300*time.Millisecond)
	for i, p := range payloads {
		if got := rec.Count(p); got != 1 {
			t.Fatalf("message %d arrived %d times", i, got)
		}
	}
	eventually(t, 10*time.Second, "two restarts", func() bool { return bus.Daemon.Stats().Restarts["router/backbone|restart"] == 2 })
	if st := b.Stats(); st.Connects < 6 {
		t.Fatalf("the backbone connected %d times, want 2 links × 3 starts", st.Connects)
	}
}
