// Package plugins is the contract between threatbus and its plugins, and the
// compile-time registry that holds them.
//
// A plugin speaks one external protocol and maps it to bus messages. It sees
// the bus only through the small interfaces below: it never touches the actor
// runtime, supervision or routing, which live in package actors.
//
// Every plugin lives in its own folder (plugins/apps/<name>,
// plugins/backbones/<name>) with a README.md and an embedded sample.conf, and
// registers itself from init(); package plugins/all blank-imports them all.
package plugins

import (
	"context"
	"log/slog"
	"time"

	"github.com/threatbus/threatbus/messages"
)

// Plugin is what every plugin implements. The value a constructor returns is
// also the plugin's configuration: its exported fields with `toml` tags are
// decoded from the plugin's config table before Init is called. A field tagged
// `required:"true"` must be set in the file or the environment.
type Plugin interface {
	// SampleConfig returns the plugin's documented TOML table (its sample.conf).
	SampleConfig() string
	// Init validates the decoded configuration and fills in defaults. It must
	// not dial, listen or start goroutines: `threatbus check` calls it.
	Init() error
}

// App is an application plugin: it connects outside tools to the bus.
type App interface {
	Plugin
	// Run serves until ctx is cancelled and then returns ctx.Err() or nil.
	// Any other return, or a panic, is a failure: the bus restarts the app
	// (see package actors for the supervision policy). Subscriptions made
	// through bus outlive such a restart; Run must not assume a clean slate.
	Run(ctx context.Context, bus Bus) error
}

// Snapshotter is implemented by apps that can answer snapshot requests (MISP
// from its REST API, the zmq app by asking its clients).
type Snapshotter interface {
	// Snapshot answers req by calling reply once per object (the raw STIX JSON
	// of one indicator or sighting). It runs on its own goroutine; it may
	// return before all replies are sent and keep calling reply later, for as
	// long as the request has not expired (reply then returns an error).
	Snapshot(ctx context.Context, req SnapshotRequest, reply func(body []byte) error) error
}

// SnapshotRequest asks for the objects of one type seen in the last Window.
type SnapshotRequest struct {
	ID     string
	Type   messages.SnapshotType
	Window time.Duration
}

// Bus is the bus as an app sees it. It is safe for concurrent use.
type Bus interface {
	// Publish puts one object on the bus. payload is the object's JSON (a STIX
	// indicator or sighting, or a snapshot request or envelope); its topic
	// follows from its "type". The bus keeps payload: the caller must not
	// modify it afterwards. Publish returns an error only for input the bus
	// cannot route; it does not wait for delivery.
	Publish(ctx context.Context, payload []byte) error
	// Subscribe starts a subscription and returns once it is in force: every
	// message published afterwards whose topic starts with one of topics is
	// handed to sink, once. A Snapshot window > 0 also asks the apps that can
	// for older objects, which arrive through the same sink.
	Subscribe(ctx context.Context, req SubscribeRequest) (Subscription, error)
	// Logger is the app's logger, with a plugin attribute.
	Logger() *slog.Logger
}

// Object is a payload the caller has already validated as a STIX object of
// type Type (with stix.Validate or a decoder).
type Object struct {
	Type    string
	Payload []byte
}

// BatchPublisher is implemented by the Bus apps get, for hot paths.
// PublishBatch is Publish for objects the caller has validated: the bus does
// not read their payloads again to find their types, and puts them all on
// the bus, in order, with one hand-off instead of one per object. A Type
// that is not its payload's misroutes the message. It returns an error,
// publishing none of them, when a Type is not one the bus routes.
type BatchPublisher interface {
	PublishBatch(ctx context.Context, objs []Object) error
}

// Sink receives a subscription's messages, one at a time and in order, on a
// goroutine owned by the subscription. A slow sink delays only its own
// subscription: messages that overflow its outbox are dropped oldest first and
// counted. An error counts the message as dropped with that cause.
type Sink func(ctx context.Context, m *messages.Envelope) error

// SubscribeRequest describes a subscription.
type SubscribeRequest struct {
	// Topics are prefixes: "stix2/" matches stix2/indicator and stix2/sighting,
	// "" matches everything. At least one is required.
	Topics []string
	// Snapshot is the look-back window; 0 asks for no snapshot. It is rounded
	// down to whole seconds (the wire unit).
	Snapshot time.Duration
	// Sink receives the messages. Required.
	Sink Sink
	// Name identifies the subscription in logs and status (a zmq p2p topic, a
	// Zeek endpoint). Optional.
	Name string
}

// Subscription is a live subscription.
type Subscription interface {
	// SnapshotID is the id of the snapshot the subscription started, or "".
	SnapshotID() string
	// Unsubscribe removes topics from the subscription; once it returns, no
	// message of a removed topic reaches the sink. Removing every topic leaves
	// the subscription idle but open.
	Unsubscribe(ctx context.Context, topics ...string) error
	// Close ends the subscription. Messages still queued are dropped and
	// counted.
	Close(ctx context.Context) error
	// Stats reports the subscription's counters.
	Stats() SubscriptionStats
}

// SubscriptionStats are the counters of one subscription.
type SubscriptionStats struct {
	Delivered uint64 `json:"delivered"`
	// Dropped by reason: "overflow", "sink_error", "closed", "shutdown".
	Dropped map[string]uint64 `json:"dropped"`
	// Queued is the number of messages waiting in the outbox.
	Queued int `json:"queued"`
}

// Backbone is a backbone plugin: the transport that carries published
// messages to every bus that shares it (only this one, for inmem).
type Backbone interface {
	Plugin
	// Start connects the transport. From then on, every message the transport
	// receives, including the bus's own publishes coming back, must be handed
	// to deliver. deliver is safe for concurrent use and never blocks for long.
	// Start returns once the backbone can accept Publish.
	Start(ctx context.Context, deliver func(*messages.Envelope)) error
	// Publish sends one envelope. It is called from a single goroutine. An
	// error means the message was not accepted by the transport.
	Publish(ctx context.Context, env *messages.Envelope) error
	// Stop disconnects. Messages the backbone already accepted are delivered
	// or reported before it returns, within ctx's deadline.
	Stop(ctx context.Context) error
}

// LogReceiver is implemented by backbones that log. The bus hands them its
// logger, with the plugin attribute set, before Start; apps get theirs from
// Bus.Logger.
type LogReceiver interface {
	SetLogger(*slog.Logger)
}

// Flusher is implemented by backbones that hold messages outside the bus
// after Publish returned (in a broker, on the way to and back from other
// hosts). Flush returns once every message Publish accepted before the call
// has been handed to deliver, or ctx ends (then with an error saying what
// is still out). The bus calls it at its drain barrier, so that a graceful
// stop delivers everything published before it.
type Flusher interface {
	Flush(ctx context.Context) error
}

// Checker is implemented by plugins with an external connection. Ready
// returns nil when the connection is up, or why it is not; /readyz and the
// status report it. It must be cheap and safe for concurrent use.
type Checker interface {
	Ready() error
}

// Reporter is implemented by plugins that keep state of their own worth
// showing: counters, peers, queues, when a source was last heard from. The
// status endpoint and every /metrics scrape call Report, so it must be cheap
// and safe for concurrent use, also before Start and after Stop.
type Reporter interface {
	Report() Report
}

// Report is one plugin's own state.
type Report struct {
	// Details appears under the plugin in /api/v1/status; any value
	// encoding/json can marshal (typically the plugin's Stats).
	Details any
	// Metrics are exported on /metrics as threatbus_<Name> with the label
	// plugin set to the instance's name.
	Metrics []Metric
}

// Metric is one sample of a plugin's metric.
type Metric struct {
	// Name follows Prometheus conventions, prefixed with the plugin
	// ("rabbitmq_confirmed_total", "cluster_peer_queue_messages"): base
	// units, _total for counters. Every sample of one Name has the same
	// label names.
	Name string
	Help string
	// Counter marks a monotonic count; otherwise the value is a gauge.
	Counter bool
	// Labels are the sample's labels besides plugin, e.g. {"peer": "10.0.0.2:14001"}.
	Labels map[string]string
	Value  float64
}

// ConfigError marks a failure that restarting cannot fix (a refused
// credential, an address that is not ours). Run or Start returning one stops
// the plugin at once instead of restarting it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }
