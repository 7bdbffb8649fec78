package actors

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Errors of fault injection.
var (
	ErrChaosDisabled = errors.New("fault injection is disabled: set [chaos] enabled = true")
	ErrUnknownTarget = errors.New("no such plugin")
)

// chaos is fault injection: targets panic with a probability per message,
// or once per interval, or on request (Daemon.Crash). All of it is inert
// unless [chaos] enabled is true.
type chaos struct {
	enabled     bool
	probability float64
	targets     map[string]bool // actor names, as the recovery middleware knows them
}

func newChaos(rt *runtime) *chaos {
	c := &chaos{enabled: rt.cfg.Chaos.Enabled, probability: rt.cfg.Chaos.Probability, targets: map[string]bool{}}
	for _, t := range rt.cfg.Chaos.Targets {
		if who, _, err := rt.target(t); err == nil {
			c.targets[who] = true
		}
	}
	return c
}

// strike reports whether who should panic on msg now. Lifecycle messages
// are spared: a panic in Started would only make a restart loop.
func (c *chaos) strike(who string, msg any) bool {
	if c == nil || c.probability == 0 || !c.targets[who] {
		return false
	}
	switch msg.(type) {
	case actor.SystemMessage, *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting, *actor.Terminated:
		return false
	}
	return rand.Float64() < c.probability
}

// target resolves a plugin name (an app, the backbone by name or as
// "backbone") or "router" to the actor's name in logs and its PID.
func (rt *runtime) target(name string) (string, *actor.PID, error) {
	switch name {
	case "router":
		return "router", rt.router, nil
	case "backbone", rt.cfg.Backbone.Name:
		return "backbone", rt.system.NewLocalPID(backboneID), nil
	}
	for _, a := range rt.cfg.Apps {
		if a.Name == name {
			return "app/" + name, rt.system.NewLocalPID(appsID + "/" + name), nil
		}
	}
	return "", nil, fmt.Errorf("%w %q (want an enabled app, the backbone or \"router\")", ErrUnknownTarget, name)
}

// Crash makes the named plugin actor (an app, the backbone) or the router
// panic when it reaches the request in its mailbox: what came before is
// handled normally. Refused unless fault injection is enabled.
func (d *Daemon) Crash(name string) error {
	if !d.rt.chaos.enabled {
		return ErrChaosDisabled
	}
	_, pid, err := d.rt.target(name)
	if err != nil {
		return err
	}
	d.rt.log.Warn("fault injection: crashing a plugin actor on request", "target", name)
	d.rt.root.Send(pid, &crashRequest{reason: "requested"})
	return nil
}

// crashEvery crashes every target once per interval until stop is closed.
func (d *Daemon) crashEvery(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, name := range d.rt.cfg.Chaos.Targets {
				if _, pid, err := d.rt.target(name); err == nil {
					d.rt.root.Send(pid, &crashRequest{reason: "chaos interval"})
				}
			}
		}
	}
}
