package actors

import (
	"context"
	"fmt"

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
}

func newBackbone(rt *runtime) actor.Producer {
	return func() actor.Actor {
		return &backboneActor{rt: rt, plugin: rt.cfg.Backbone.Plugin.(plugins.Backbone)}
	}
}

func (b *backboneActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Publish:
		if err := b.plugin.Publish(context.Background(), m.Envelope); err != nil {
			b.rt.drops.add("backbone_error", "backbone", b.rt.cfg.Backbone.Name, "error", err)
		}
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
		system, router := b.rt.system, b.rt.router
		deliver := func(env *messages.Envelope) {
			system.Root.Send(router, &messages.Deliver{Envelope: env})
		}
		if err := b.plugin.Start(runCtx, deliver); err != nil {
			err = fmt.Errorf("%s: %w", b.rt.cfg.Backbone.Name, err)
			b.rt.plugins.noteError(b.rt.cfg.Backbone.Name, err)
			panic(err)
		}
		b.rt.plugins.set(b.rt.cfg.Backbone.Name, stateRunning)
	case *actor.Stopping:
		b.rt.plugins.set(b.rt.cfg.Backbone.Name, stateStopping)
		b.stop()
	case *actor.Restarting:
		b.stop()
	case *actor.Stopped:
	default:
		b.rt.unexpected("backbone", m)
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
