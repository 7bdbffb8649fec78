package cluster

import (
	"github.com/asynkron/protoactor-go/actor"
)

// busActor is this member's end of the wire: it delivers what peers forward
// and answers their pings. It never forwards: a message crosses the cluster
// in one hop, from the member it was published on to each other member.
type busActor struct {
	r *run
	m *member
}

func (a *busActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *Forward:
		knows, blocked := a.r.view(a.m, msg.From)
		if msg.Version != WireVersion_WIRE_VERSION_1 {
			a.r.faults.Add(1)
			ctx.Respond(&ForwardAck{Version: WireVersion_WIRE_VERSION_1, Batch: msg.Batch, KnowsYou: knows, BlockedYou: blocked,
				Error: "unsupported wire version " + msg.Version.String()})
			return
		}
		for _, env := range msg.Envelopes {
			if env.Validate() != nil {
				a.r.faults.Add(1)
				continue
			}
			a.r.deliver(env)
		}
		a.r.received.Add(uint64(len(msg.Envelopes)))
		ctx.Respond(&ForwardAck{Version: WireVersion_WIRE_VERSION_1, Batch: msg.Batch, KnowsYou: knows, BlockedYou: blocked})
	case *Ping:
		knows, blocked := a.r.view(a.m, msg.From)
		ctx.Respond(&PingResponse{Version: WireVersion_WIRE_VERSION_1, Member: a.m.id, KnowsYou: knows, BlockedYou: blocked})
	case *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting:
	default:
		a.r.faults.Add(1)
	}
}
