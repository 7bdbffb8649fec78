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
	// delivered is the last batch number delivered from each sender. A
	// sender has one batch in flight and numbers them upwards, so a batch
	// at or below it is a resend after a lost or late ack: acknowledged
	// again, not delivered again. The router's de-duplication window
	// would miss such a copy once more than dedup_window messages passed
	// in between (ack_timeout at a high rate).
	delivered map[string]uint64
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
		if a.delivered == nil || len(a.delivered) > 1024 {
			a.delivered = map[string]uint64{} // senders come and go with restarts and rejoins
		}
		if last, ok := a.delivered[msg.From]; ok && msg.Batch <= last {
			a.r.resent.Add(uint64(len(msg.Envelopes)))
			ctx.Respond(&ForwardAck{Version: WireVersion_WIRE_VERSION_1, Batch: msg.Batch, KnowsYou: knows, BlockedYou: blocked})
			return
		}
		a.delivered[msg.From] = msg.Batch
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
