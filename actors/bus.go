package actors

import (
	"hash/maphash"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/messages/stix"
)

// busActor spawns the router and the apps supervisor and runs the snapshot
// flow of shared/specs/messages.md. Snapshot requests and envelopes travel as
// ordinary messages on their threatbus/ topics, so they cross backbones like
// everything else; the bus subscribes to both: requests it hands to its
// snapshot-capable apps, envelopes it unwraps and delivers to the one
// subscriber that asked, if that subscriber is its own.
//
// Where several buses share a backbone (RabbitMQ hosts, cluster members),
// each hands a request to its own apps, and buses configured alike answer
// alike. The requester therefore delivers each distinct body of a snapshot
// once: a body repeated byte for byte is another bus's copy of an answer
// already delivered, and is counted as deduplicated at "snapshot".
type busActor struct {
	rt         *runtime
	snapshots  map[string]*pendingSnapshot
	order      []string // snapshot ids, oldest first: expiry order, as the TTL is fixed
	cancelTick scheduler.CancelFunc
	seed       maphash.Seed
}

type pendingSnapshot struct {
	subscriber *actor.PID
	expires    time.Time
	// seen holds a hash of every body delivered for this snapshot (a map
	// entry of a few tens of bytes per object), for as long as the
	// snapshot is in flight.
	seen map[uint64]struct{}
}

type expireSnapshots struct{}

// countSnapshots asks for the number of snapshots in flight (an int).
type countSnapshots struct{}

func newBus(rt *runtime) actor.Producer {
	return func() actor.Actor {
		return &busActor{rt: rt, snapshots: map[string]*pendingSnapshot{}, seed: maphash.MakeSeed()}
	}
}

func (b *busActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Deliver:
		for _, env := range m.Envelopes {
			switch env.Type {
			case messages.TypeSnapshotRequest:
				b.onRequest(ctx, env)
			case messages.TypeSnapshotEnvelope:
				b.onEnvelope(ctx, env)
			}
		}
	case *startSnapshot:
		b.start(ctx, m)
	case *messages.SnapshotEnvelope:
		// A local app's answer: publish it, so that it reaches the requester
		// whichever bus it is on.
		se, err := stix.NewSnapshotEnvelope(stix.SnapshotType(m.SnapshotType), m.SnapshotId, m.Body)
		if err != nil {
			b.rt.faults.add("snapshot:bad_body", "snapshot", m.SnapshotId, "error", err)
			return
		}
		env, err := b.rt.envelope(se.Raw, "bus")
		if err != nil {
			b.rt.faults.add("snapshot:bad_body", "snapshot", m.SnapshotId, "error", err)
			return
		}
		ctx.Send(b.rt.router, &messages.Publish{Envelopes: []*messages.Envelope{env}})
	case *flushRequest:
		// The bus subscribes to the snapshot topics and handles what it gets
		// at once: everything before the barrier is done.
		ctx.Respond(&flushed{})
	case *countSnapshots:
		ctx.Respond(len(b.snapshots))
	case *expireSnapshots:
		b.expire(time.Now())
	case *actor.Terminated:
		for id, p := range b.snapshots {
			if p.subscriber.Equal(m.Who) {
				delete(b.snapshots, id)
			}
		}
	case *messages.Subscribed:
	case *actor.Started:
		if _, err := ctx.SpawnNamed(b.rt.props("router", newRouter(b.rt), pluginStrategy{b.rt}), "router"); err != nil {
			panic(err)
		}
		if _, err := ctx.SpawnNamed(b.rt.props("apps", newApps(b.rt), pluginStrategy{b.rt}), "apps"); err != nil {
			panic(err)
		}
		ctx.Request(b.rt.router, &messages.Subscribe{
			Topics:     []string{messages.TopicSnapshotRequest, messages.TopicSnapshotEnvelope},
			Subscriber: ctx.Self(),
		})
		every := b.rt.cfg.Bus.SnapshotTTL.D() / 10
		b.cancelTick = scheduler.NewTimerScheduler(ctx).SendRepeatedly(every, every, ctx.Self(), &expireSnapshots{})
	case *actor.Stopping, *actor.Restarting:
		if b.cancelTick != nil {
			b.cancelTick()
			b.cancelTick = nil
		}
	case *actor.Stopped:
	default:
		b.rt.unexpected("bus", m)
	}
}

func (b *busActor) start(ctx actor.Context, m *startSnapshot) {
	// order may still hold the ids of snapshots whose requester has gone
	// (forgotten on Terminated): they take no room, and go uncounted.
	for len(b.snapshots) >= b.rt.cfg.Bus.MaxSnapshots {
		b.forget(b.order[0], "snapshot:evicted_at_capacity")
	}
	b.snapshots[m.id] = &pendingSnapshot{subscriber: m.subscriber, expires: time.Now().Add(b.rt.cfg.Bus.SnapshotTTL.D()), seen: map[uint64]struct{}{}}
	b.order = append(b.order, m.id)
	ctx.Watch(m.subscriber)
	for _, t := range m.types {
		req, err := stix.NewSnapshotRequest(stix.SnapshotType(t), m.id, time.Duration(m.seconds)*time.Second)
		if err != nil {
			panic(err) // we built the request: a bug
		}
		env, err := b.rt.envelope(req.Raw, "bus")
		if err != nil {
			panic(err) // we built the payload: a bug
		}
		ctx.Send(b.rt.router, &messages.Publish{Envelopes: []*messages.Envelope{env}})
		b.rt.snapshotRequests.Add(1)
	}
}

func (b *busActor) onRequest(ctx actor.Context, env *messages.Envelope) {
	r, err := stix.DecodeSnapshotRequest(env.Payload)
	if err != nil {
		b.rt.faults.add("snapshot:invalid_request", "origin", env.Origin, "error", err)
		return
	}
	ctx.Send(b.rt.apps, &messages.SnapshotRequest{SnapshotId: r.SnapshotID, SnapshotType: messages.SnapshotType(r.SnapshotType), SnapshotSeconds: int64(r.Window / time.Second)})
}

func (b *busActor) onEnvelope(ctx actor.Context, env *messages.Envelope) {
	e, err := stix.DecodeSnapshotEnvelope(env.Payload)
	if err != nil {
		b.rt.faults.add("snapshot:invalid_envelope", "origin", env.Origin, "error", err)
		return
	}
	p, ok := b.snapshots[e.SnapshotID]
	if !ok {
		return // another bus's snapshot, or an expired one
	}
	body, err := b.rt.envelope(e.Body, env.Origin)
	if err != nil {
		b.rt.faults.add("snapshot:invalid_body", "origin", env.Origin, "error", err)
		return
	}
	h := maphash.Bytes(b.seed, e.Body)
	if _, dup := p.seen[h]; dup {
		b.rt.dedups.add("snapshot")
		return
	}
	p.seen[h] = struct{}{}
	ctx.Send(p.subscriber, &messages.Deliver{Envelopes: []*messages.Envelope{body}})
}

func (b *busActor) expire(now time.Time) {
	for len(b.order) > 0 {
		p, ok := b.snapshots[b.order[0]]
		if ok && p.expires.After(now) {
			return
		}
		b.forget(b.order[0], "")
	}
}

// forget drops the oldest snapshot id (the head of order).
func (b *busActor) forget(id, cause string) {
	b.order = b.order[1:]
	if _, ok := b.snapshots[id]; ok && cause != "" {
		b.rt.faults.add(cause, "snapshot", id)
	}
	delete(b.snapshots, id)
}
