package actors

import (
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/threatbus/threatbus/plugins"
)

// pluginStrategy supervises plugin actors (the backbone under the router,
// apps and subscribers under apps). A failure restarts the child after a
// backoff that doubles with each failure inside the restart window, up to a
// cap, with jitter; the child's mailbox is suspended meanwhile, so nothing
// queued for it is lost. An app that fails more than max_restarts times in
// the window, or with a *plugins.ConfigError, is stopped and reported. The
// backbone and subscribers are never given up on: without the backbone the
// bus is useless, and a subscription belongs to a peer that is still there.
type pluginStrategy struct{ rt *runtime }

func (s pluginStrategy) HandleFailure(system *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	sup := s.rt.cfg.Supervision
	name, isApp := appName(child)
	publish := func(d actor.Directive) {
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: d})
	}
	stop := func(why string) {
		publish(actor.StopDirective)
		if isApp {
			s.rt.plugins.failed(name, why, reason)
		}
		supervisor.StopChildren(child)
	}
	if err, ok := reason.(error); ok {
		var ce *plugins.ConfigError
		if errors.As(err, &ce) {
			stop("configuration error: not restarted")
			return
		}
	}
	rs.Fail()
	n := rs.NumberOfFailures(sup.RestartWindow.D())
	if isApp && n > sup.MaxRestarts {
		stop("failed too often: stopped")
		return
	}
	publish(actor.RestartDirective)
	if isApp {
		s.rt.plugins.set(name, stateRestarting)
	} else if child.Id == backboneID {
		s.rt.plugins.set(s.rt.cfg.Backbone.Name, stateRestarting)
	}
	time.AfterFunc(backoff(n, sup.BackoffMin.D(), sup.BackoffMax.D()), func() {
		if isApp && s.rt.stopping.Load() {
			// The stop ends the app anyway. The backbone and subscribers
			// are restarted even now: the drain passes through them.
			s.rt.plugins.set(name, stateStopping)
			return
		}
		supervisor.RestartChildren(child)
	})
}

// backoff is min·2^(n-1), capped at max, ±20% jitter.
func backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	jitter := time.Duration(float64(d) * 0.2 * (2*rand.Float64() - 1))
	return d + jitter
}

// appName returns the app an apps child runs, and whether the child is an
// app actor (not a subscriber).
func appName(child *actor.PID) (string, bool) {
	rest, ok := strings.CutPrefix(child.Id, appsID+"/")
	if !ok || strings.Contains(rest, "/") {
		return "", false
	}
	return rest, true
}

// resumeStrategy supervises the bus's own actors (daemon, bus, router,
// apps): a failed child is resumed, not restarted, so it keeps its state and
// its children, and only the message it failed on is lost. Their state is the
// bus's state (the subscription table, snapshots in flight) and their
// children are the plugins and subscribers: restarting a parent stops its
// children, so a restart would end every subscription and connection.
type resumeStrategy struct{}

func (resumeStrategy) HandleFailure(system *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.ResumeDirective})
	supervisor.ResumeChildren(child)
}
