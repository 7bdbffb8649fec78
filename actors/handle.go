package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins"
)

// busHandle is the plugins.Bus one app gets. It turns calls into messages to
// the router and the apps actor; it holds no state of its own.
type busHandle struct {
	rt   *runtime
	name string
	log  *slog.Logger
	// published and delivered count this app's traffic by topic index:
	// messages it put on the bus, and messages its subscriptions' sinks took.
	published, delivered [numTopics]atomic.Uint64
}

var (
	_ plugins.Bus            = (*busHandle)(nil)
	_ plugins.BatchPublisher = (*busHandle)(nil)
)

func newBusHandle(rt *runtime, name string) *busHandle {
	return &busHandle{rt: rt, name: name, log: rt.log.With("plugin", name)}
}

func (h *busHandle) Logger() *slog.Logger { return h.log }

// Publish implements plugins.Bus.
func (h *busHandle) Publish(_ context.Context, payload []byte) error {
	env, err := h.rt.envelope(payload, h.name)
	if err != nil {
		return err
	}
	h.send(env)
	return nil
}

// PublishBatch implements plugins.BatchPublisher.
func (h *busHandle) PublishBatch(_ context.Context, objs []plugins.Object) error {
	if len(objs) == 0 {
		return nil
	}
	envs := make([]*messages.Envelope, len(objs))
	for i, o := range objs {
		env, err := h.rt.typedEnvelope(o.Type, o.Payload, h.name)
		if err != nil {
			return err
		}
		envs[i] = env
	}
	h.send(envs...)
	return nil
}

func (h *busHandle) send(envs ...*messages.Envelope) {
	h.rt.root.Send(h.rt.router, &messages.Publish{Envelopes: envs})
	var n [numTopics]uint64
	for _, env := range envs {
		n[topicIndex(env.Topic)]++
	}
	for i, c := range n {
		if c > 0 {
			h.published[i].Add(c)
		}
	}
}

// envelope wraps a payload for routing; only the type is read from it.
func (rt *runtime) envelope(payload []byte, origin string) (*messages.Envelope, error) {
	typ, err := peekType(payload)
	if err != nil {
		return nil, err
	}
	return rt.typedEnvelope(typ, payload, origin)
}

// typedEnvelope wraps a payload of a known type for routing.
func (rt *runtime) typedEnvelope(typ string, payload []byte, origin string) (*messages.Envelope, error) {
	topic, err := messages.TopicFor(typ)
	if err != nil {
		return nil, err
	}
	return &messages.Envelope{
		Version: messages.EnvelopeVersion_ENVELOPE_VERSION_1,
		Id:      rt.ids.next(),
		Topic:   topic,
		Type:    typ,
		Payload: payload,
		Origin:  origin,
	}, nil
}

// peekType reads the top-level "type" of a JSON object without decoding it.
func peekType(payload []byte) (string, error) {
	typ, _, err := stix.Peek(payload)
	return typ, err
}

// Subscribe implements plugins.Bus.
func (h *busHandle) Subscribe(ctx context.Context, req plugins.SubscribeRequest) (plugins.Subscription, error) {
	if len(req.Topics) == 0 {
		return nil, fmt.Errorf("%s: subscribe: no topic", h.name)
	}
	if req.Sink == nil {
		return nil, fmt.Errorf("%s: subscribe: no sink", h.name)
	}
	if req.Snapshot < 0 {
		return nil, fmt.Errorf("%s: subscribe: negative snapshot window %s", h.name, req.Snapshot)
	}
	if req.Name == "" {
		req.Name = h.name
	}
	// The subscriber gives up a little before this call does, so that the
	// two never disagree on whether the subscription was made.
	timeout := requestTimeout(ctx)
	deadline := time.Now().Add(timeout - min(timeout/10, 100*time.Millisecond))
	res, err := h.rt.root.RequestFuture(h.rt.apps, &spawnSubscriber{owner: h, req: req, deadline: deadline}, timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: subscribe %v: %w", h.name, req.Topics, err)
	}
	ready, ok := res.(*subscriberReady)
	if !ok {
		return nil, fmt.Errorf("%s: subscribe %v: unexpected answer %T", h.name, req.Topics, res)
	}
	return &subscription{rt: h.rt, pid: ready.pid, state: ready.state}, nil
}

// subscription is the handle of one subscriber actor.
type subscription struct {
	rt    *runtime
	pid   *actor.PID
	state *subState
}

var _ plugins.Subscription = (*subscription)(nil)

func (s *subscription) SnapshotID() string {
	if id := s.state.snapshotID.Load(); id != nil {
		return *id
	}
	return ""
}

func (s *subscription) Stats() plugins.SubscriptionStats { return s.state.stats() }

// Unsubscribe implements plugins.Subscription. An empty list removes nothing:
// Close ends a subscription.
func (s *subscription) Unsubscribe(ctx context.Context, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	_, err := s.rt.root.RequestFuture(s.pid, &messages.Unsubscribe{Topics: topics}, requestTimeout(ctx)).Result()
	if err != nil {
		return fmt.Errorf("unsubscribe %v: %w", topics, err)
	}
	return nil
}

// Close implements plugins.Subscription: it leaves the router's table first,
// so nothing is sent to a stopped actor, then stops the subscriber.
func (s *subscription) Close(ctx context.Context) error {
	root := s.rt.root
	timeout := requestTimeout(ctx)
	if _, err := root.RequestFuture(s.rt.router, &messages.Unsubscribe{Subscriber: s.pid}, timeout).Result(); err != nil {
		return fmt.Errorf("close subscription: %w", err)
	}
	if _, err := root.RequestFuture(s.pid, &closeSubscription{}, timeout).Result(); err != nil && !errors.Is(err, actor.ErrDeadLetter) {
		return fmt.Errorf("close subscription: %w", err)
	}
	return nil
}
