package actors

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
)

// Well-known actor ids. Child ids are their parent's id, a slash and their
// name, and restarts keep ids, so these stay valid for the daemon's life.
const (
	daemonID   = "daemon"
	busID      = daemonID + "/bus"
	routerID   = busID + "/router"
	backboneID = routerID + "/backbone"
	appsID     = busID + "/apps"
)

// runtime is what every actor of one daemon shares: immutable after Start,
// apart from the tallies, which are safe for concurrent use.
type runtime struct {
	system *actor.ActorSystem
	// root sends from outside the actors (the apps' handles, the backbone's
	// deliveries, requests); like every actor of ours it counts the bus
	// messages it sends in queued.
	root *actor.RootContext
	// queued is the number of bus messages (envelopes of a Publish or
	// Deliver) sent to one of our actors and not yet received by it: what
	// sits in mailboxes. Whatever is still there when the tree has stopped
	// was dropped with the mailbox, and Stop counts it (dropShutdown).
	queued atomic.Int64
	cfg    *config.Config
	log    *slog.Logger
	ids    *idGen
	// faults counts bad input and unexpected messages, by cause.
	faults *tally
	// drops counts messages the bus accepted and then could not deliver, by
	// reason.
	drops *tally
	// panics counts recovered panics, by actor.
	panics *tally
	// dedups counts copies removed on purpose, by where: "router" (a
	// transport's redelivery), "snapshot" (another bus's answer). Normal
	// operation, not faults.
	dedups *tally
	// handles are the apps' plugins.Bus, in config order.
	handles []*busHandle
	// plugins records each plugin's lifecycle.
	plugins *pluginTable
	chaos   *chaos
	// routed counts deliveries to subscribers, by topic index.
	routed [numTopics]atomic.Uint64
	// snapshotRequests counts the snapshot requests this bus started.
	snapshotRequests atomic.Uint64
	// stopping is set when the daemon starts to stop: a restart that was
	// waiting out its backoff is not carried out any more.
	stopping atomic.Bool
	// stoppingTree is set when the drain is over and the tree is being
	// stopped. A subscriber that stops then stays in the router's table,
	// so that what is routed to it is counted as dropped (dropShutdown, as
	// a dead letter) instead of being routed to nobody.
	stoppingTree atomic.Bool
	// stopBy is the deadline of the daemon's Stop (Unix nanoseconds; 0:
	// none): the drain and the plugins' Stop share it.
	stopBy atomic.Int64

	router, apps, bus *actor.PID
	// appsUp is closed once the apps actor has started (and spawned the apps).
	appsUp     chan struct{}
	appsUpOnce sync.Once
}

// handle returns the plugins.Bus of an app.
func (rt *runtime) handle(app string) *busHandle {
	for _, h := range rt.handles {
		if h.name == app {
			return h
		}
	}
	panic("actors: no handle for app " + app) // Start makes one per app
}

// Topic indexes for per-topic counters.
const numTopics = 4

var topicNames = [numTopics]string{messages.TopicIndicator, messages.TopicSighting, messages.TopicSnapshotRequest, messages.TopicSnapshotEnvelope}

func topicIndex(topic string) int {
	for i, t := range topicNames {
		if t == topic {
			return i
		}
	}
	return 0 // unreachable: envelopes are validated before they are counted
}

// unexpected records a message an actor has no handler for: counted and
// logged once per actor and type, never a crash.
func (rt *runtime) unexpected(who string, msg any) {
	rt.faults.add(fmt.Sprintf("unexpected_message:%s:%T", who, msg), "actor", who)
}

// drainContext bounds one step of a stop: drain_timeout, and no later than
// the deadline of the daemon's Stop, so that the steps together keep it.
func (rt *runtime) drainContext() (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(rt.cfg.Bus.DrainTimeout.D())
	if by := rt.stopBy.Load(); by != 0 && by < deadline.UnixNano() {
		deadline = time.Unix(0, by)
	}
	return context.WithDeadline(context.Background(), deadline)
}

// requestTimeout is the time a request from outside the actors may take:
// ctx's deadline, or a default that keeps a stuck actor from hanging a caller.
func requestTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return 10 * time.Second
}

// crashRequest makes any of our actors panic when it receives it: fault
// injection, which the daemon only sends when it is enabled.
type crashRequest struct{ reason string }

func (c *crashRequest) Error() string { return "injected crash: " + c.reason }

// busMessages is how many bus messages msg carries: the envelopes of a
// Publish or a Deliver, none for anything else. It is what is lost when msg
// is.
func busMessages(msg any) uint64 {
	if m, ok := msg.(interface{ GetEnvelopes() []*messages.Envelope }); ok {
		return uint64(len(m.GetEnvelopes()))
	}
	return 0
}

// countedPanic carries a panic, and its stack, whose lost messages the
// actor has counted.
type countedPanic struct {
	v     any
	stack []byte
}

// recoverMiddleware logs a panic with its stack (protoactor logs it without
// one, at INFO) and re-panics so supervision handles it.
func (rt *runtime) recoverMiddleware(who string) actor.ReceiverMiddleware {
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			defer func() {
				if r := recover(); r != nil {
					rt.panics.add(who)
					// The bus messages it held are lost: a batch
					// may have been partly handed on, so this counts
					// at most that many too many. An actor that kept
					// the rest of its batch counted its loss itself.
					var stack []byte
					if cp, ok := r.(countedPanic); ok {
						r, stack = cp.v, cp.stack
					} else {
						stack = debug.Stack()
						rt.drops.addN("actor_crash", busMessages(env.Message), "actor", who)
					}
					rt.log.Error("actor panicked; its supervisor decides what happens next",
						"actor", who, "panic", fmt.Sprint(r), "message", fmt.Sprintf("%T", env.Message),
						"stack", string(stack))
					panic(r)
				}
			}()
			if n := busMessages(env.Message); n > 0 {
				rt.queued.Add(-int64(n))
			}
			if cr, ok := env.Message.(*crashRequest); ok {
				panic(cr)
			}
			// Random faults end when the daemon starts to stop: a drain
			// barrier lost to one would hold the stop for drain_timeout.
			if !rt.stopping.Load() && rt.chaos.strike(who, env.Message) {
				panic(&crashRequest{reason: "chaos probability"})
			}
			next(c, env)
		}
	}
}

// countSent counts the bus messages sent to an actor in queued; the
// receiving actor's recoverMiddleware, or the dead-letter handler for an
// actor that is gone, takes them off again.
func (rt *runtime) countSent(next actor.SenderFunc) actor.SenderFunc {
	return func(c actor.SenderContext, target *actor.PID, env *actor.MessageEnvelope) {
		if n := busMessages(env.Message); n > 0 {
			rt.queued.Add(int64(n))
		}
		next(c, target, env)
	}
}

// props builds the props of one of our actors: the recovery middleware, the
// count of bus messages it sends, and the supervision strategy for its
// children.
func (rt *runtime) props(who string, producer actor.Producer, children actor.SupervisorStrategy) *actor.Props {
	opts := []actor.PropsOption{actor.WithReceiverMiddleware(rt.recoverMiddleware(who)), actor.WithSenderMiddleware(rt.countSent)}
	if children != nil {
		opts = append(opts, actor.WithSupervisor(children))
	}
	return actor.PropsFromProducer(producer, opts...)
}
