package actors

import (
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// ConfigError marks a plugin failure that restarting cannot fix (a refused
// credential, a port that is not ours): the plugin is stopped at once.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

const (
	// maxRestarts within restartWindow stops a plugin for good.
	maxRestarts   = 10
	restartWindow = time.Minute
)

// decide restarts failed actors unless the failure is a configuration error.
func decide(reason any) actor.Directive {
	if err, ok := reason.(error); ok {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return actor.StopDirective
		}
	}
	return actor.RestartDirective
}

// pluginStrategy supervises plugin actors (apps, the backbone): restart, but
// stop a plugin that keeps failing.
func pluginStrategy() actor.SupervisorStrategy {
	return actor.NewOneForOneStrategy(maxRestarts, restartWindow, decide)
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
