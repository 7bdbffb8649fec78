package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

// appsActor supervises the app actors and the subscribers they ask for, and
// hands snapshot requests to every app that can answer them.
type appsActor struct {
	rt           *runtime
	snapshotters []*actor.PID
	subs         map[string]*subState // live subscribers, by pidKey
}

// listSubscriptions asks the apps actor for the live subscriptions
// (answered with []SubscriptionStatus).
type listSubscriptions struct{}

func newApps(rt *runtime) actor.Producer {
	return func() actor.Actor { return &appsActor{rt: rt, subs: map[string]*subState{}} }
}

func (a *appsActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *spawnSubscriber:
		if m.replyTo == nil {
			m.replyTo = ctx.Sender()
		}
		producer, state := newSubscriber(a.rt, m)
		pid := ctx.SpawnPrefix(a.rt.props("subscriber", producer, nil), m.owner.name+"/sub-")
		state.id = pid.Id[len(appsID)+1:]
		a.subs[pidKey(pid)] = state
	case *listSubscriptions:
		out := make([]SubscriptionStatus, 0, len(a.subs))
		for _, st := range a.subs {
			out = append(out, st.status())
		}
		ctx.Respond(out)
	case *ping:
		ctx.Respond(&pong{})
	case *messages.SnapshotRequest:
		for _, pid := range a.snapshotters {
			ctx.Send(pid, m)
		}
	case *actor.Started:
		a.snapshotters = nil
		for _, in := range a.rt.cfg.Apps {
			app := in.Plugin.(plugins.App)
			pid, err := ctx.SpawnNamed(a.rt.props("app/"+in.Name, newApp(a.rt, in.Name, app), nil), in.Name)
			if err != nil {
				panic(err)
			}
			if _, ok := app.(plugins.Snapshotter); ok {
				a.snapshotters = append(a.snapshotters, pid)
			}
		}
		a.rt.appsUpOnce.Do(func() { close(a.rt.appsUp) })
	case *actor.Terminated:
		// A finished subscriber, or an app the supervisor gave up on.
		delete(a.subs, pidKey(m.Who))
	case *actor.Stopping, *actor.Stopped, *actor.Restarting:
	default:
		a.rt.unexpected("apps", m)
	}
}
