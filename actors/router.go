package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/threatbus/threatbus/messages"
)

// routerActor is the inq: apps send it Publish, it hands them to the
// backbone, and what the backbone delivers it fans out to the subscribers of
// this bus. It never blocks: sending to a subscriber only enqueues.
//
// A failure of the router resumes it (see the supervision policy in doc.go):
// a crash while routing one message loses that message and nothing else, and
// no subscriber has to notice.
type routerActor struct {
	rt       *runtime
	backbone *actor.PID
	table    *table
	dedup    *dedup
}

func newRouter(rt *runtime) actor.Producer {
	return func() actor.Actor {
		return &routerActor{rt: rt, table: newTable(), dedup: newDedup(rt.cfg.Bus.DedupWindow)}
	}
}

// flushRequest is a barrier: answered once everything sent to the receiver
// before it has been handed on. The daemon uses it to drain before stopping.
type flushRequest struct{}

// backboneFlushed is the backbone's half of a flush, sent to the router.
type backboneFlushed struct{ replyTo *actor.PID }

// flushResponse answers a flushRequest to the router with the subscribers
// that may still hold messages.
type flushResponse struct{ subscribers []*actor.PID }

// countSubscribers asks the router for the size of its table, without the
// bus's own entry; answered with an int.
type countSubscribers struct{}

// startSnapshot asks the bus to run the snapshot a Subscribe asked for.
type startSnapshot struct {
	id         string
	subscriber *actor.PID
	types      []messages.SnapshotType
	seconds    int64
}

func (r *routerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Publish:
		if err := m.GetEnvelope().Validate(); err != nil {
			r.rt.faults.add("router:invalid_publish", "error", err)
			return
		}
		ctx.Send(r.backbone, m)
	case *messages.Deliver:
		env := m.GetEnvelope()
		if err := env.Validate(); err != nil {
			r.rt.faults.add("router:invalid_delivery", "error", err)
			return
		}
		if r.dedup.add(env.Id) {
			r.rt.dedups.add("router")
			return
		}
		pids := r.table.match(env.Topic)
		for _, pid := range pids {
			ctx.Send(pid, m)
		}
		r.rt.routed[topicIndex(env.Topic)].Add(uint64(len(pids)))
	case *messages.Subscribe:
		r.subscribe(ctx, m)
	case *messages.Unsubscribe:
		if m.GetSubscriber() == nil {
			r.rt.faults.add("router:unsubscribe_without_subscriber")
			ctx.Respond(&messages.Unsubscribed{})
			return
		}
		if r.table.remove(m.Subscriber, m.Topics) {
			ctx.Unwatch(m.Subscriber)
		}
		ctx.Respond(&messages.Unsubscribed{Topics: m.Topics})
	case *actor.Terminated:
		r.table.remove(m.Who, nil)
	case *flushRequest:
		ctx.Forward(r.backbone)
	case *countSubscribers:
		n := r.table.len()
		if r.table.has(r.rt.bus) {
			n-- // the bus's own subscription to the snapshot topics
		}
		ctx.Respond(n)
	case *backboneFlushed:
		ctx.Send(m.replyTo, &flushResponse{subscribers: r.table.pids()})
	case *actor.Started:
		pid, err := ctx.SpawnNamed(r.rt.props("backbone", newBackbone(r.rt), nil), "backbone")
		if err != nil {
			panic(err)
		}
		r.backbone = pid
	case *actor.Stopping, *actor.Stopped, *actor.Restarting:
	default:
		r.rt.unexpected("router", m)
	}
}

func (r *routerActor) subscribe(ctx actor.Context, m *messages.Subscribe) {
	pid := m.GetSubscriber()
	if pid == nil || len(m.Topics) == 0 {
		r.rt.faults.add("router:subscribe_without_subscriber_or_topic")
		ctx.Respond(&messages.Subscribed{})
		return
	}
	if r.table.add(pid, m.Topics) {
		ctx.Watch(pid)
	}
	resp := &messages.Subscribed{Topics: m.Topics}
	if m.SnapshotSeconds > 0 {
		var types []messages.SnapshotType
		seen := map[messages.SnapshotType]bool{}
		for _, t := range m.Topics {
			for _, st := range messages.SnapshotTypesFor(t) {
				if !seen[st] {
					seen[st] = true
					types = append(types, st)
				}
			}
		}
		if len(types) > 0 {
			resp.SnapshotId = uuid.NewString()
			ctx.Send(ctx.Parent(), &startSnapshot{id: resp.SnapshotId, subscriber: pid, types: types, seconds: m.SnapshotSeconds})
		}
	}
	ctx.Respond(resp)
}
