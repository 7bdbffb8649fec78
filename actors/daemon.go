package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/plugins"
)

// Daemon is a running bus: an actor system and the tree under the daemon
// actor.
type Daemon struct {
	rt       *runtime
	pid      *actor.PID
	sub      *eventstream.Subscription
	restarts *tally
	started  time.Time
	// stopChaos ends the interval fault injector.
	stopChaos chan struct{}
	chaosDone sync.WaitGroup
	stopOnce  sync.Once
	stopErr   error
}

// daemonActor is the top of the tree. It supervises the bus with a strategy
// that always resumes, and is itself supervised by a guardian that does the
// same: no failure escalates out of the process.
type daemonActor struct{ rt *runtime }

func (d *daemonActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if _, err := ctx.SpawnNamed(d.rt.props("bus", newBus(d.rt), resumeStrategy{}), "bus"); err != nil {
			panic(err)
		}
	case *actor.Stopping, *actor.Stopped, *actor.Restarting, *actor.Terminated:
	default:
		d.rt.unexpected("daemon", m)
	}
}

type ping struct{}
type pong struct{}

// Start builds the actor tree for cfg and returns once every plugin actor has
// been spawned. It does not wait for plugins to connect.
func Start(cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	if cfg.Backbone.Plugin == nil {
		return nil, errors.New("actors: no backbone configured")
	}
	if _, ok := cfg.Backbone.Plugin.(plugins.Backbone); !ok {
		return nil, fmt.Errorf("actors: %s is not a backbone", cfg.Backbone.Name)
	}
	for _, a := range cfg.Apps {
		if _, ok := a.Plugin.(plugins.App); !ok {
			return nil, fmt.Errorf("actors: %s is not an app", a.Name)
		}
	}
	libLog := slog.New(minLevel{Handler: log.Handler(), min: slog.LevelWarn}).With("component", "protoactor")
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return libLog }))
	rt := &runtime{
		system:  system,
		cfg:     cfg,
		log:     log,
		ids:     newIDGen(),
		faults:  newTally(log, "bad input or unexpected message ignored"),
		drops:   newTally(log, "message dropped"),
		panics:  newTally(nil, ""),
		dedups:  newTally(nil, ""),
		plugins: newPluginTable(),
		appsUp:  make(chan struct{}),
		router:  system.NewLocalPID(routerID),
		apps:    system.NewLocalPID(appsID),
		bus:     system.NewLocalPID(busID),
	}
	rt.root = actor.NewRootContext(system, nil, rt.countSent)
	rt.chaos = newChaos(rt)
	rt.plugins.add(plugins.KindBackbone, cfg.Backbone.Name, cfg.Backbone.Plugin)
	for _, a := range cfg.Apps {
		rt.plugins.add(plugins.KindApp, a.Name, a.Plugin)
		rt.handles = append(rt.handles, newBusHandle(rt, a.Name))
	}
	d := &Daemon{rt: rt, restarts: newTally(nil, ""), started: time.Now(), stopChaos: make(chan struct{})}
	d.sub = system.EventStream.Subscribe(func(evt any) {
		if dl, ok := evt.(*actor.DeadLetterEvent); ok {
			// A message sent to an actor that had just stopped (a subscriber
			// between its death and the router hearing of it, or any actor
			// while the tree stops).
			n := busMessages(dl.Message)
			rt.queued.Add(-int64(n))
			reason := "dead_letter"
			if rt.stoppingTree.Load() {
				reason = dropShutdown
			}
			rt.drops.addN(reason, n, "actor", dl.PID.GetId())
			return
		}
		if se, ok := evt.(*actor.SupervisorEvent); ok {
			d.restarts.add(actorLabel(se.Child.Id) + "|" + directiveLabel(se.Directive))
			log.Warn("supervisor acted on a failed actor", "actor", se.Child.Id, "directive", directiveLabel(se.Directive), "reason", fmt.Sprint(se.Reason))
		}
	})
	props := rt.props("daemon", func() actor.Actor { return &daemonActor{rt: rt} }, resumeStrategy{})
	pid, err := rt.root.Copy().WithGuardian(resumeStrategy{}).SpawnNamed(props, daemonID)
	if err != nil {
		system.EventStream.Unsubscribe(d.sub)
		system.Shutdown()
		return nil, fmt.Errorf("actors: spawn daemon: %w", err)
	}
	d.pid = pid
	// Wait until the apps actor's Started (which spawns every app) has run.
	// Pinging its PID instead would race with its spawn: protoactor
	// registers an actor before its mailbox is ready.
	select {
	case <-rt.appsUp:
	case <-time.After(10 * time.Second):
		_ = d.Stop(context.Background())
		return nil, errors.New("actors: the actor tree did not come up within 10s")
	}
	if cfg.Chaos.Enabled {
		log.Warn("fault injection is enabled", "targets", cfg.Chaos.Targets, "probability", cfg.Chaos.Probability, "interval", cfg.Chaos.Interval.D())
		if iv := cfg.Chaos.Interval.D(); iv > 0 {
			d.chaosDone.Add(1)
			go func() { defer d.chaosDone.Done(); d.crashEvery(iv, d.stopChaos) }()
		}
	}
	return d, nil
}

// actorLabel names an actor in metrics: its path under the bus, with every
// subscriber of an app folded into one name to bound the label's values.
func actorLabel(id string) string {
	id = strings.TrimPrefix(id, busID+"/")
	if i := strings.Index(id, "/sub-"); i >= 0 {
		return id[:i] + "/subscriber"
	}
	return id
}

func directiveLabel(d actor.Directive) string {
	switch d {
	case actor.RestartDirective:
		return "restart"
	case actor.ResumeDirective:
		return "resume"
	case actor.StopDirective:
		return "stop"
	case actor.EscalateDirective:
		return "escalate"
	}
	return "unknown"
}

// Stop drains and stops the bus: it waits until every message published
// before the call has been handed to its subscribers' sinks (or ctx ends),
// then stops the tree from the top, waits for it (or ctx) and shuts the
// actor system down. What is published meanwhile is delivered if it gets
// through before its actor stops; what stays in a mailbox is counted as
// dropped (shutdown).
func (d *Daemon) Stop(ctx context.Context) error {
	d.stopOnce.Do(func() { d.stopErr = d.stop(ctx) })
	return d.stopErr
}

func (d *Daemon) stop(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		d.rt.stopBy.Store(dl.UnixNano())
	}
	d.rt.stopping.Store(true)
	close(d.stopChaos)
	d.chaosDone.Wait()
	var errs []error
	if err := d.drain(ctx); err != nil {
		errs = append(errs, fmt.Errorf("drain: %w", err))
	}
	if err := d.stopTree(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stop actors: %w", err))
	}
	if n := d.rt.queued.Swap(0); n > 0 {
		d.rt.drops.addN(dropShutdown, uint64(n), "where", "mailboxes at stop")
	}
	d.rt.system.EventStream.Unsubscribe(d.sub)
	d.rt.system.Shutdown()
	return errors.Join(errs...)
}

// stopGrace is how long Stop waits for the tree after ctx has ended.
const stopGrace = time.Second

// stopTree stops the daemon actor after what is in its mailbox, and with it
// the tree, and waits until it has terminated or ctx ends. (protoactor's
// PoisonFuture would give up after a fixed 10 s, while each actor's stop
// step may take drain_timeout.) Without a deadline in ctx it waits
// drain_timeout and the default request timeout on top.
func (d *Daemon) stopTree(ctx context.Context) error {
	watching, gone := make(chan struct{}), make(chan struct{})
	var once sync.Once
	watcher := actor.PropsFromFunc(func(c actor.Context) {
		switch c.Message().(type) {
		case *actor.Started:
			c.Watch(d.pid)
			close(watching)
		case *actor.Terminated:
			once.Do(func() { close(gone) })
			c.Stop(c.Self())
		}
	})
	w := d.rt.root.Spawn(watcher)
	// The Watch must be in the daemon's mailbox before the poison: an actor
	// that is already stopping answers a Watch with Terminated at once.
	// (It is a system message, so it is handled before the poison.)
	<-watching
	d.rt.stoppingTree.Store(true)
	d.rt.root.Poison(d.pid)
	var expired <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := time.NewTimer(d.rt.cfg.Bus.DrainTimeout.D() + requestTimeout(ctx))
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-gone:
		return nil
	case <-ctx.Done():
		// Every stop step ends by ctx's deadline too (drainContext), so
		// the tree is about to be gone: a moment's grace, for the count
		// of what its mailboxes held.
		select {
		case <-gone:
			return nil
		case <-time.After(stopGrace):
		}
		d.rt.root.Stop(w)
		return ctx.Err()
	case <-expired:
		d.rt.root.Stop(w)
		return errors.New("the actor tree did not stop in time")
	}
}

// drain pushes a flush barrier through the router and the backbone, then
// through every subscriber's outbox, within drain_timeout (and ctx): a sink
// that cannot deliver (its peer gone) holds up its own flush, and the stop
// then goes on without it; its subscriber's stop step gives it another
// drain_timeout at most before the sink's context ends.
func (d *Daemon) drain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.rt.cfg.Bus.DrainTimeout.D())
	defer cancel()
	root := d.rt.root
	res, err := root.RequestFuture(d.rt.router, &flushRequest{}, requestTimeout(ctx)).Result()
	if err != nil {
		return err
	}
	subs := res.(*flushResponse).subscribers
	futures := make([]*actor.Future, len(subs))
	for i, pid := range subs {
		futures[i] = root.RequestFuture(pid, &flushRequest{}, requestTimeout(ctx))
	}
	var errs []error
	for i, f := range futures {
		if err := f.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("subscriber %s: %w", subs[i].Id, err))
		}
	}
	return errors.Join(errs...)
}

// Subscribers returns the number of subscriptions in force.
func (d *Daemon) Subscribers(ctx context.Context) (int, error) {
	res, err := d.rt.root.RequestFuture(d.rt.router, &countSubscribers{}, requestTimeout(ctx)).Result()
	if err != nil {
		return 0, err
	}
	return res.(int), nil
}

// Snapshots returns the number of snapshots in flight.
func (d *Daemon) Snapshots(ctx context.Context) (int, error) {
	res, err := d.rt.root.RequestFuture(d.rt.bus, &countSnapshots{}, requestTimeout(ctx)).Result()
	if err != nil {
		return 0, err
	}
	return res.(int), nil
}

// KillSubscription stops a subscription's actor without unsubscribing it
// first: what the router sees when a subscriber dies. It exists for fault
// tests; plugins end subscriptions with Close.
func (d *Daemon) KillSubscription(sub plugins.Subscription) error {
	s, ok := sub.(*subscription)
	if !ok {
		return fmt.Errorf("actors: %T is not a subscription of this bus", sub)
	}
	return d.rt.root.StopFuture(s.pid).Wait()
}

// Stats are the daemon's counters.
type Stats struct {
	// Faults counts bad input and unexpected messages, by cause.
	Faults map[string]uint64
	// Drops counts accepted messages that were not delivered, by reason.
	Drops map[string]uint64
	// Panics counts recovered panics, by actor.
	Panics map[string]uint64
	// Deduplicated counts copies removed, by where: "router", "snapshot".
	Deduplicated map[string]uint64
	// Restarts counts supervisor decisions, by actor id.
	Restarts map[string]uint64
}

// Stats returns the current counters.
func (d *Daemon) Stats() Stats {
	return Stats{Faults: d.rt.faults.snapshot(), Drops: d.rt.drops.snapshot(), Panics: d.rt.panics.snapshot(), Deduplicated: d.rt.dedups.snapshot(), Restarts: d.restarts.snapshot()}
}

// minLevel drops records below min: protoactor logs routine events at INFO.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(a), min: h.min}
}

func (h minLevel) WithGroup(n string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(n), min: h.min}
}
