package actors

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

// appActor runs one app plugin's Run loop on a goroutine it owns. A Run that
// fails or panics becomes a failure of this actor, so supervision restarts
// it; stopping the actor cancels Run and waits for it, within the drain
// timeout.
type appActor struct {
	rt     *runtime
	name   string
	app    plugins.App
	handle *busHandle

	gen    int // generation of the Run goroutine, so a late failure of an old one is ignored
	runCtx context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// appFailed reports that a generation of Run ended without being asked to.
type appFailed struct {
	gen int
	err error
}

func newApp(rt *runtime, name string, app plugins.App) actor.Producer {
	handle := rt.handle(name) // shared by every incarnation: the plugin keeps it
	gen := 0
	return func() actor.Actor {
		gen++
		return &appActor{rt: rt, name: name, app: app, handle: handle, gen: gen}
	}
}

func (a *appActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.SnapshotRequest:
		a.snapshot(m)
	case *appFailed:
		if m.gen == a.gen {
			a.rt.plugins.noteError(a.name, m.err)
			panic(m.err)
		}
	case *actor.Started:
		a.start(ctx.Self())
		a.rt.plugins.set(a.name, stateRunning)
	case *actor.Stopping:
		a.rt.plugins.set(a.name, stateStopping)
		a.stop()
	case *actor.Restarting:
		a.stop()
	case *actor.Stopped:
	default:
		a.rt.unexpected("app/"+a.name, m)
	}
}

func (a *appActor) start(self *actor.PID) {
	a.runCtx, a.cancel = context.WithCancel(context.Background())
	a.done = make(chan struct{})
	ctx, cancel, done, gen, root := a.runCtx, a.cancel, a.done, a.gen, a.rt.root
	go func() {
		defer close(done)
		err := a.run(ctx)
		asked := ctx.Err() != nil
		// What the failed Run left running on ctx (snapshot handlers, its
		// own goroutines) ends now, not after the restart's backoff.
		cancel()
		if asked {
			return
		}
		if err == nil {
			err = errors.New("Run returned while the bus was running")
		}
		root.Send(self, &appFailed{gen: gen, err: fmt.Errorf("%s: %w", a.name, err)})
	}()
}

func (a *appActor) run(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			a.rt.panics.add("app/" + a.name)
			a.rt.log.Error("app panicked", "app", a.name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return a.app.Run(ctx, a.handle)
}

func (a *appActor) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	ctx, cancel := a.rt.drainContext()
	defer cancel()
	start := time.Now()
	select {
	case <-a.done:
	case <-ctx.Done():
		a.rt.log.Error("app did not return from Run after cancellation; abandoning it", "app", a.name, "waited", time.Since(start).Round(time.Millisecond))
	}
	a.cancel = nil
}

// snapshot runs the app's snapshot handler on its own goroutine: a MISP
// search may take minutes and must not hold up this actor.
func (a *appActor) snapshot(m *messages.SnapshotRequest) {
	sn, ok := a.app.(plugins.Snapshotter)
	if !ok || a.runCtx == nil {
		return
	}
	req := plugins.SnapshotRequest{ID: m.SnapshotId, Type: m.SnapshotType, Window: time.Duration(m.SnapshotSeconds) * time.Second}
	ctx, root, bus := a.runCtx, a.rt.root, a.rt.bus
	reply := func(body []byte) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: snapshot %s: app is stopping", a.name, req.ID)
		}
		if _, err := peekType(body); err != nil {
			return fmt.Errorf("%s: snapshot %s: %w", a.name, req.ID, err)
		}
		root.Send(bus, &messages.SnapshotEnvelope{SnapshotId: req.ID, SnapshotType: req.Type, Body: body})
		return nil
	}
	go func() {
		defer func() {
			if r := recover(); r != nil {
				a.rt.panics.add("snapshot:" + a.name)
				a.rt.log.Error("snapshot handler panicked", "app", a.name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		}()
		if err := sn.Snapshot(ctx, req, reply); err != nil && ctx.Err() == nil {
			a.rt.faults.add("snapshot_failed:"+a.name, "app", a.name, "snapshot", req.ID, "error", err)
		}
	}()
}
