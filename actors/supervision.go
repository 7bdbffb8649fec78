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

// coreStrategy supervises the bus's own actors (bus, router, apps), which
// must always come back.
func coreStrategy() actor.SupervisorStrategy {
	return actor.NewOneForOneStrategy(1<<30, restartWindow, actor.DefaultDecider)
}
