package actors

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

// backboneActor drives the configured backbone plugin: Publish from the
// router goes out through it, and whatever the transport receives goes back
// to the router as Deliver. The plugin value survives restarts of the actor;
// a restart stops and starts it again.
type backboneActor struct {
	rt     *runtime
	plugin plugins.Backbone
	cancel context.CancelFunc
	out    *coalescer
	// rest is what a crash left of a batch: shared by the actor's
	// incarnations, and published first by the next one.
	rest *[]*messages.Envelope
}

// coalescer is the deliver func a backbone plugin gets. While the actor
// hands the plugin a batch, what the plugin delivers (at once, for inmem
// and a cluster's own messages; from another goroutine, for what arrives
// meanwhile) is gathered and goes to the router as one Deliver; otherwise
// each delivery goes on by itself. Order is that of the calls to deliver
// either way. What is held goes on when the batch is done, when maxHeld
// envelopes are held, and after a Publish call that ends more than maxHold
// after the hold began: a plugin that blocks in Publish (a broker pushing
// back) does not hold up what it delivers meanwhile beyond that call.
type coalescer struct {
	mu      sync.Mutex
	holding bool
	since   time.Time // when the current hold began; the actor's goroutine only
	held    []*messages.Envelope
	send    func(*messages.Deliver)
}

// Bounds of a hold.
const (
	maxHeld = 1024
	maxHold = time.Millisecond
)

func (c *coalescer) deliver(env *messages.Envelope) {
	c.mu.Lock()
	if c.holding {
		c.held = append(c.held, env)
		if len(c.held) >= maxHeld {
			c.send(&messages.Deliver{Envelopes: c.held})
			c.held = nil
		}
		c.mu.Unlock()
		return
	}
	// Sent under the lock, so that a batch released concurrently cannot
	// overtake this delivery, nor this one a later one.
	c.send(&messages.Deliver{Envelopes: []*messages.Envelope{env}})
	c.mu.Unlock()
}

func (c *coalescer) hold() {
	c.mu.Lock()
	c.holding, c.since = true, time.Now()
	c.mu.Unlock()
}

// tick releases what is held if the hold has lasted maxHold, and holds on.
// Called after every Publish: since belongs to the actor's goroutine (only
// hold and tick use it), so the common case takes no lock.
func (c *coalescer) tick() {
	now := time.Now()
	if now.Sub(c.since) < maxHold {
		return
	}
	c.mu.Lock()
	if len(c.held) > 0 {
		c.send(&messages.Deliver{Envelopes: c.held})
		c.held = nil
	}
	c.since = now
	c.mu.Unlock()
}

func (c *coalescer) release() {
	c.mu.Lock()
	c.holding = false
	if len(c.held) > 0 {
		c.send(&messages.Deliver{Envelopes: c.held})
		c.held = nil
	}
	c.mu.Unlock()
}

func newBackbone(rt *runtime) actor.Producer {
	rest := new([]*messages.Envelope)
	return func() actor.Actor {
		return &backboneActor{rt: rt, plugin: rt.cfg.Backbone.Plugin.(plugins.Backbone), rest: rest}
	}
}

func (b *backboneActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Publish:
		b.publish(m.Envelopes)
	case *flushRequest:
		// The barrier: what the plugin holds outside the bus comes back
		// (through deliver, into the router's mailbox) before the router
		// hears that the backbone is flushed.
		if f, ok := b.plugin.(plugins.Flusher); ok {
			fctx, cancel := b.rt.drainContext()
			if err := f.Flush(fctx); err != nil {
				b.rt.log.Warn("backbone did not flush in time; what it still holds may be dropped at shutdown", "backbone", b.rt.cfg.Backbone.Name, "error", err)
			}
			cancel()
		}
		ctx.Send(ctx.Parent(), &backboneFlushed{replyTo: ctx.Sender()})
	case *actor.Started:
		var runCtx context.Context
		runCtx, b.cancel = context.WithCancel(context.Background())
		if lr, ok := b.plugin.(plugins.LogReceiver); ok {
			lr.SetLogger(b.rt.log.With("plugin", b.rt.cfg.Backbone.Name))
		}
		root, router := b.rt.root, b.rt.router
		b.out = &coalescer{send: func(d *messages.Deliver) { root.Send(router, d) }}
		if err := b.plugin.Start(runCtx, b.out.deliver); err != nil {
			err = fmt.Errorf("%s: %w", b.rt.cfg.Backbone.Name, err)
			b.rt.plugins.noteError(b.rt.cfg.Backbone.Name, err)
			panic(err)
		}
		b.rt.plugins.set(b.rt.cfg.Backbone.Name, stateRunning)
		if rest := *b.rest; len(rest) > 0 {
			*b.rest = nil
			b.publish(rest)
		}
	case *actor.Stopping:
		b.rt.plugins.set(b.rt.cfg.Backbone.Name, stateStopping)
		if n := len(*b.rest); n > 0 { // a crash's leftovers that no incarnation published
			b.rt.drops.addN("actor_crash", uint64(n), "actor", "backbone")
			*b.rest = nil
		}
		b.stop()
	case *actor.Restarting:
		b.stop()
	case *actor.Stopped:
	default:
		b.rt.unexpected("backbone", m)
	}
}

// publish hands envs to the plugin in order. A panic in the plugin loses
// the envelope it was given (counted) and restarts the actor; the envelopes
// after it wait in rest for the next incarnation, which publishes them
// before anything else in its mailbox.
func (b *backboneActor) publish(envs []*messages.Envelope) {
	b.out.hold()
	defer b.out.release() // also when the plugin panics
	for i, env := range envs {
		func() {
			defer func() {
				if r := recover(); r != nil {
					*b.rest = envs[i+1:]
					b.rt.drops.add("actor_crash", "actor", "backbone")
					panic(countedPanic{v: r, stack: debug.Stack()})
				}
			}()
			if err := b.plugin.Publish(context.Background(), env); err != nil {
				b.rt.drops.add("backbone_error", "backbone", b.rt.cfg.Backbone.Name, "error", err)
			}
		}()
		b.out.tick()
	}
}

func (b *backboneActor) stop() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	b.cancel = nil
	ctx, cancel := b.rt.drainContext()
	defer cancel()
	if err := b.plugin.Stop(ctx); err != nil {
		b.rt.log.Warn("backbone did not stop cleanly", "backbone", b.rt.cfg.Backbone.Name, "error", err)
	}
}
