// Package misp is the MISP app plugin (shared/specs/misp.md): it turns MISP
// attribute changes, read from MISP's ZeroMQ publisher or from Kafka, into
// STIX 2.1 indicators on the bus; it writes stix2/sighting messages back to
// MISP as sightings over the REST API; and it answers indicator snapshot
// requests with a REST attribute search.
//
// It must not lose sightings while MISP is unreachable (they wait in a
// bounded queue that outlives a restart of Run), must never publish a
// pattern that does not parse, must not crash on any input from MISP, and
// must not share a zmq socket between goroutines: the intake goroutine owns
// its sockets.
package misp

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

//go:embed sample.conf
var sampleConfig string

// Name is the plugin's registry key and config table name.
const Name = "misp"

func init() {
	plugins.AddApp(Name, func() plugins.App { return New() })
}

// Defaults.
const (
	DefaultZMQPort          = 50000 // MISP's default ZeroMQ port
	DefaultHeartbeatTimeout = 30 * time.Second
	DefaultKafkaTopic       = "misp_attribute"
	DefaultKafkaGroup       = "threatbus"
	DefaultTimeout          = 30 * time.Second
	DefaultQueue            = 10000
	DefaultRetryMin         = time.Second
	DefaultRetryMax         = time.Minute
	DefaultPageSize         = 1000
)

// App is the MISP app plugin and its configuration: the exported fields are
// the [apps.misp] table (see sample.conf and README.md).
type App struct {
	API       API       `toml:"api"`
	ZMQ       ZMQ       `toml:"zmq"`
	Kafka     Kafka     `toml:"kafka"`
	Filter    []Filter  `toml:"filter"`
	Sightings Sightings `toml:"sightings"`
	Snapshots Snapshots `toml:"snapshot"`

	st *state
}

// API is how the plugin reaches MISP's REST API.
type API struct {
	// URL is MISP's base URL, e.g. https://misp.example.org (a path prefix
	// is kept: https://host/misp).
	URL string `toml:"url" required:"true"`
	// Key is the API key (Authorization header); KeyFile names a file that
	// holds it instead. Exactly one of them is set.
	Key     config.Secret `toml:"key"`
	KeyFile string        `toml:"key_file"`
	// VerifyTLS checks MISP's certificate (default true); CAFile adds a PEM
	// bundle of CAs to trust.
	VerifyTLS bool   `toml:"verify_tls"`
	CAFile    string `toml:"ca_file"`
	// Timeout bounds one request.
	Timeout config.Duration `toml:"timeout"`
}

// ZMQ is the ZeroMQ intake: a SUB socket connected to MISP's publisher.
type ZMQ struct {
	// Host of MISP's ZeroMQ publisher; setting it selects this intake.
	Host string `toml:"host"`
	Port int    `toml:"port"`
	// Username and Password are ZMQ PLAIN credentials, when MISP wants them.
	Username string        `toml:"username"`
	Password config.Secret `toml:"password"`
	// HeartbeatTimeout: when nothing (not even a misp_json_self heartbeat,
	// which MISP sends after 10 s of silence) arrives for this long, the
	// plugin reports itself not ready. 0 turns the check off.
	HeartbeatTimeout config.Duration `toml:"heartbeat_timeout"`
}

// Kafka is the Kafka intake, the alternative to ZeroMQ.
type Kafka struct {
	// Brokers (host:port); setting them selects this intake.
	Brokers []string `toml:"brokers"`
	Topics  []string `toml:"topics"`
	Group   string   `toml:"group"`
	// ClientID names the client to the brokers.
	ClientID string `toml:"client_id"`
	// Offset is where a new consumer group starts: "earliest" or "latest".
	Offset string `toml:"offset"`
	// TLS connects with TLS; CAFile adds CAs to trust.
	TLS    bool   `toml:"tls"`
	CAFile string `toml:"ca_file"`
	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
	SASLMechanism string        `toml:"sasl_mechanism"`
	SASLUsername  string        `toml:"sasl_username"`
	SASLPassword  config.Secret `toml:"sasl_password"`
}

// Filter selects attributes: inside one filter the lists are AND'ed, each
// list is OR'ed, and a missing or empty list matches everything. Filters
// are OR'ed; no filter at all lets everything through.
type Filter struct {
	// Orgs are ids of the event's creator organisation (Event.orgc_id).
	Orgs []string `toml:"orgs"`
	// Types are MISP attribute types.
	Types []string `toml:"types"`
	// Tags are tag names on the attribute (or, when MISP sends them, on
	// its event).
	Tags []string `toml:"tags"`
}

// Sightings configures the write-back of stix2/sighting messages.
type Sightings struct {
	Enabled bool `toml:"enabled"`
	// Queue is how many sightings wait while MISP is unreachable; beyond it
	// the oldest is dropped and counted.
	Queue int `toml:"queue"`
	// RetryMin and RetryMax bound the backoff between attempts while MISP
	// is down or answers 5xx.
	RetryMin config.Duration `toml:"retry_min"`
	RetryMax config.Duration `toml:"retry_max"`
}

// Snapshots configures snapshot answers from the REST API.
type Snapshots struct {
	// PageSize is the restSearch "limit": attributes per request.
	PageSize int `toml:"page_size"`
}

// New returns an App with the default configuration.
func New() *App {
	return &App{
		API: API{VerifyTLS: true, Timeout: config.Duration(DefaultTimeout)},
		ZMQ: ZMQ{Port: DefaultZMQPort, HeartbeatTimeout: config.Duration(DefaultHeartbeatTimeout)},
		Kafka: Kafka{
			Topics: []string{DefaultKafkaTopic},
			Group:  DefaultKafkaGroup,
			Offset: "earliest",
		},
		Sightings: Sightings{
			Enabled:  true,
			Queue:    DefaultQueue,
			RetryMin: config.Duration(DefaultRetryMin),
			RetryMax: config.Duration(DefaultRetryMax),
		},
		Snapshots: Snapshots{PageSize: DefaultPageSize},
	}
}

var _ interface {
	plugins.App
	plugins.Snapshotter
	plugins.Checker
} = (*App)(nil)

// SampleConfig implements plugins.Plugin.
func (*App) SampleConfig() string { return sampleConfig }

// Init implements plugins.Plugin: it validates the configuration, reads the
// key and CA files and prepares the REST client. It does not dial.
func (a *App) Init() error {
	rest, err := a.validate()
	if err != nil {
		return fmt.Errorf("misp: %w", err)
	}
	if a.st == nil {
		a.st = newState(a)
	}
	a.st.rest = rest
	return nil
}

// state is what outlives a restart of Run: counters, liveness, the
// sighting queue, the filter memory and the bus subscription.
type state struct {
	rest     *restClient
	intake   string // "zmq" or "kafka"
	endpoint string // what the intake connects to, for messages
	proc     *processor
	live     *liveness
	counts   *counters
	queue    *sightingQueue
	search   chan struct{} // bounds concurrent snapshot searches
	reasons  reasons       // refusal reasons already logged

	mu      sync.Mutex
	log     *slog.Logger
	sub     plugins.Subscription
	running bool
	runs    int // Run invocations, restarts included
}

// maxSearches bounds concurrent snapshot searches against MISP.
const maxSearches = 2

func newState(a *App) *state {
	st := &state{
		proc:   newProcessor(a.Filter),
		counts: newCounters(),
		queue:  newSightingQueue(a.Sightings.Queue),
		search: make(chan struct{}, maxSearches),
		log:    slog.New(slog.DiscardHandler),
	}
	if len(a.Kafka.Brokers) > 0 {
		st.intake, st.endpoint = "kafka", fmt.Sprint(a.Kafka.Brokers)
	} else {
		st.intake, st.endpoint = "zmq", zmqEndpoint(a.ZMQ.Host, a.ZMQ.Port)
	}
	st.live = newLiveness(st.intake, st.endpoint)
	return st
}

func (s *state) logger() *slog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log
}

// Run implements plugins.App: it connects the intake, subscribes to
// sightings (once: the subscription outlives a restart of Run) and sends
// them to MISP until ctx ends.
func (a *App) Run(ctx context.Context, bus plugins.Bus) error {
	st := a.st
	if st == nil {
		return &plugins.ConfigError{Err: errors.New("misp: Run before Init")}
	}
	log := bus.Logger()
	st.mu.Lock()
	if st.running {
		st.mu.Unlock()
		return errors.New("misp: Run is already running")
	}
	st.running, st.log = true, log
	st.runs++
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		st.running = false
		st.mu.Unlock()
		st.live.stopped()
		st.rest.closeIdle()
	}()
	if st.rest.insecure() {
		log.Warn("misp: the API key is sent to MISP without TLS", "url", a.API.URL)
	}

	if a.Sightings.Enabled {
		if err := a.subscribe(ctx, bus); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}

	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	start := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- f(ctx)
		}()
	}
	switch st.intake {
	case "kafka":
		start(func(ctx context.Context) error { return a.runKafka(ctx, bus) })
	default:
		start(func(ctx context.Context) error { return a.runZMQ(ctx, bus) })
	}
	if a.Sightings.Enabled {
		start(a.sendSightings)
	}
	log.Info("misp: started", "intake", st.intake, "from", st.endpoint, "api", a.API.URL,
		"filters", len(a.Filter), "sightings", a.Sightings.Enabled)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err == nil && outer.Err() == nil {
			err = fmt.Errorf("misp: the %s intake ended unexpectedly", st.intake)
		}
	}
	cancel()
	wg.Wait()
	if outer.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	if q := st.queue.len(); q > 0 {
		log.Warn("misp: stopping with sightings not yet sent to MISP; a restart of the app sends them, a stop of the bus loses them", "queued", q)
	}
	log.Info("misp: stopped", a.Stats().logAttrs()...) // a failure is returned, not logged: the bus reports it
	var ce *plugins.ConfigError
	if errors.As(err, &ce) {
		a.unsubscribe(log)
	}
	return err
}

// subscribe starts the sightings subscription the first time Run is called.
// Later Runs (after a restart) reuse it: the bus keeps subscriptions across
// app restarts, and its sink feeds the queue that every Run drains.
func (a *App) subscribe(ctx context.Context, bus plugins.Bus) error {
	st := a.st
	st.mu.Lock()
	have := st.sub != nil
	st.mu.Unlock()
	if have {
		return nil
	}
	sub, err := bus.Subscribe(ctx, plugins.SubscribeRequest{
		Topics: []string{messages.TopicSighting},
		Sink:   a.sinkSighting,
		Name:   Name + "/sightings",
	})
	if err != nil {
		return fmt.Errorf("misp: subscribe to %s: %w", messages.TopicSighting, err)
	}
	st.mu.Lock()
	st.sub = sub
	st.mu.Unlock()
	return nil
}

// unsubscribe ends the sightings subscription when the app stops for good.
func (a *App) unsubscribe(log *slog.Logger) {
	st := a.st
	st.mu.Lock()
	sub := st.sub
	st.sub = nil
	st.mu.Unlock()
	if sub == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sub.Close(ctx); err != nil {
		log.Warn("misp: close the sightings subscription", "error", err)
	}
}

// Ready implements plugins.Checker: nil while the intake is connected, MISP
// has been heard from recently and its REST API neither fails nor refuses
// the key, else why not (the intake's reasons say when MISP was last heard
// from).
func (a *App) Ready() error {
	if a.st == nil {
		return errors.New("misp: not initialised")
	}
	return errors.Join(a.st.live.ready(a.ZMQ.HeartbeatTimeout.D(), time.Now()), a.st.rest.ready())
}

func zmqEndpoint(host string, port int) string {
	if host == "" {
		return ""
	}
	h := host
	if needsBrackets(host) {
		h = "[" + host + "]"
	}
	return "tcp://" + h + ":" + strconv.Itoa(port)
}
