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
// a crash while routing loses the batch it was routing (counted) and nothing
// else, and no subscriber has to notice.
type routerActor struct {
	rt       *runtime
	backbone *actor.PID
	table    *table
	dedup    *dedup
	// groups and groupOf split a delivered batch per subscriber; kept
	// between batches so that splitting allocates little.
	groups  []group
	groupOf map[*actor.PID]int
}

func newRouter(rt *runtime) actor.Producer {
	return func() actor.Actor {
		return &routerActor{rt: rt, table: newTable(), dedup: newDedup(rt.cfg.Bus.DedupWindow), groupOf: map[*actor.PID]int{}}
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
		r.publish(ctx, m)
	case *messages.Deliver:
		r.deliver(ctx, m.Envelopes)
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
		if !r.rt.stoppingTree.Load() {
			r.table.remove(m.Who, nil)
		}
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

// filter returns the envelopes of envs that keep accepts, in order: envs
// itself when it accepts them all, a copy otherwise.
func filter(envs []*messages.Envelope, keep func(*messages.Envelope) bool) []*messages.Envelope {
	for i, env := range envs {
		if keep(env) {
			continue
		}
		out := append(make([]*messages.Envelope, 0, len(envs)-1), envs[:i]...)
		for _, env := range envs[i+1:] {
			if keep(env) {
				out = append(out, env)
			}
		}
		return out
	}
	return envs
}

func (r *routerActor) publish(ctx actor.Context, m *messages.Publish) {
	if len(m.Envelopes) == 0 {
		r.rt.faults.add("router:invalid_publish", "error", "no envelopes")
		return
	}
	envs := filter(m.Envelopes, func(env *messages.Envelope) bool {
		if err := env.Validate(); err != nil {
			r.rt.faults.add("router:invalid_publish", "error", err)
			return false
		}
		return true
	})
	if len(envs) == 0 {
		return
	}
	if len(envs) < len(m.Envelopes) {
		m = &messages.Publish{Envelopes: envs}
	}
	ctx.Send(r.backbone, m)
}

// deliver hands what the backbone delivered to the matching subscribers,
// each message once. A subscriber gets one Deliver per batch, with its
// envelopes in the order of the batch; when all envelopes go to the same
// subscribers (a burst of one topic), they share one Deliver.
func (r *routerActor) deliver(ctx actor.Context, envs []*messages.Envelope) {
	if len(envs) == 0 {
		r.rt.faults.add("router:invalid_delivery", "error", "no envelopes")
		return
	}
	envs = filter(envs, func(env *messages.Envelope) bool {
		if err := env.Validate(); err != nil {
			r.rt.faults.add("router:invalid_delivery", "error", err)
			return false
		}
		if r.dedup.add(env.Id) {
			r.rt.dedups.add("router")
			return false
		}
		return true
	})
	if len(envs) == 0 {
		return
	}
	var routed [numTopics]uint64
	first := r.table.match(envs[0].Topic)
	uniform := true
	for _, env := range envs {
		pids := r.table.match(env.Topic)
		routed[topicIndex(env.Topic)] += uint64(len(pids))
		uniform = uniform && samePIDs(pids, first)
	}
	for i, n := range routed {
		if n > 0 {
			r.rt.routed[i].Add(n)
		}
	}
	if uniform {
		if len(first) > 0 {
			d := &messages.Deliver{Envelopes: envs}
			for _, pid := range first {
				ctx.Send(pid, d)
			}
		}
		return
	}
	// Mixed topics with different subscribers: a batch per subscriber.
	// (Reset first as well: a resumed router may have crashed mid-split.)
	r.groups = r.groups[:0]
	clear(r.groupOf)
	for _, env := range envs {
		for _, pid := range r.table.match(env.Topic) {
			i, ok := r.groupOf[pid]
			if !ok {
				i = len(r.groups)
				r.groupOf[pid] = i
				r.groups = append(r.groups, group{pid: pid})
			}
			r.groups[i].envs = append(r.groups[i].envs, env)
		}
	}
	for i, g := range r.groups {
		ctx.Send(g.pid, &messages.Deliver{Envelopes: g.envs})
		r.groups[i] = group{}
	}
	r.groups = r.groups[:0]
	clear(r.groupOf)
}

// group is one subscriber's part of a delivered batch.
type group struct {
	pid  *actor.PID
	envs []*messages.Envelope
}

// samePIDs reports whether a and b are the same cached match.
func samePIDs(a, b []*actor.PID) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
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
