// Package zmq is the ZeroMQ app plugin: it lets the apps people run against
// Threat Bus today (vast-threatbus, suricata-threatbus, stix-shifter-threatbus,
// OpenCTI's connector, the zmq app template) use this bus unchanged. It binds
// the three sockets of shared/specs/zmq-app.md (manage REP, pub PUB, sub SUB),
// answers management requests byte for byte as the original did, backs every
// app's private topic with a bus subscription, and validates what apps
// publish before it reaches the bus.
//
// It must not change the wire protocol (clients in the field cannot be
// updated with us), must not re-encode STIX objects (bytes stay bytes), and
// must not share a zmq socket between goroutines: each socket has one owner.
package zmq

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/apps/zmq/internal/zmqbatch"
)

//go:embed sample.conf
var sampleConfig string

// Name is the plugin's registry key and config table name.
const Name = "zmq"

func init() {
	plugins.AddApp(Name, func() plugins.App { return New() })
}

// Defaults, as in the original's documented configuration.
const (
	DefaultHost             = "127.0.0.1"
	DefaultManage           = 13370
	DefaultPub              = 13371
	DefaultSub              = 13372
	DefaultHeartbeatTimeout = 3 * time.Minute
	DefaultMaxPending       = 1000
	DefaultSendHWM          = 1000
	DefaultReceiveHWM       = 10000
	DefaultStatsInterval    = time.Minute
)

// App is the zmq app plugin and its configuration. Its exported fields are
// the [apps.zmq] table; see sample.conf.
type App struct {
	// Host is the address the sockets bind: an IP, a host name (resolved
	// when the app starts; every address it resolves to is bound) or "*"
	// for all interfaces.
	Host string `toml:"host"`
	// Manage, Pub and Sub are the ports of the management REP socket, the
	// PUB socket apps receive from and the SUB socket they publish to. 0
	// picks a free port when the app first starts and keeps it afterwards.
	Manage int `toml:"manage"`
	Pub    int `toml:"pub"`
	Sub    int `toml:"sub"`
	// HeartbeatTimeout ends a subscription whose app has not sent a
	// heartbeat for this long; 0 keeps subscriptions forever (the
	// original's behaviour).
	HeartbeatTimeout config.Duration `toml:"heartbeat_timeout"`
	// MaxPending is how many messages per app this plugin holds while the
	// app is not connected yet or zmq's queue for it is full. Beyond it the
	// subscription's outbox (bus.outbox) fills, and then its oldest
	// messages are dropped and counted.
	MaxPending int `toml:"max_pending"`
	// SendHWM is zmq's queue per connected app (ZMQ_SNDHWM). Unlike the
	// original, a full queue holds messages back instead of dropping them.
	SendHWM int `toml:"send_hwm"`
	// ReceiveHWM is zmq's queue for what apps publish (ZMQ_RCVHWM).
	ReceiveHWM int `toml:"receive_hwm"`
	// SuppressEcho stops sending an object back to apps connected from the
	// address it was published from. Off by default: clients expect the
	// original's symmetric behaviour.
	SuppressEcho bool `toml:"suppress_echo"`
	// StatsInterval is how often subscriptions that dropped messages since
	// the last report are logged; 0 turns the report off.
	StatsInterval config.Duration `toml:"stats_interval"`

	st *state
}

// New returns an App with the default configuration.
func New() *App {
	return &App{
		Host:             DefaultHost,
		Manage:           DefaultManage,
		Pub:              DefaultPub,
		Sub:              DefaultSub,
		HeartbeatTimeout: config.Duration(DefaultHeartbeatTimeout),
		MaxPending:       DefaultMaxPending,
		SendHWM:          DefaultSendHWM,
		ReceiveHWM:       DefaultReceiveHWM,
		StatsInterval:    config.Duration(DefaultStatsInterval),
	}
}

var _ interface {
	plugins.App
	plugins.Snapshotter
} = (*App)(nil)

// SampleConfig implements plugins.Plugin.
func (*App) SampleConfig() string { return sampleConfig }

// Init implements plugins.Plugin: it checks the configuration. It neither
// resolves the host nor binds.
func (a *App) Init() error {
	var errs []error
	if err := checkHost(a.Host); err != nil {
		errs = append(errs, err)
	}
	ports := map[int]string{}
	for _, p := range []struct {
		name string
		port int
	}{{"manage", a.Manage}, {"pub", a.Pub}, {"sub", a.Sub}} {
		if p.port < 0 || p.port > 65535 {
			errs = append(errs, fmt.Errorf("%s port %d: want 1 to 65535, or 0 for a free port", p.name, p.port))
			continue
		}
		if other, dup := ports[p.port]; dup && p.port != 0 {
			errs = append(errs, fmt.Errorf("%s and %s both use port %d", other, p.name, p.port))
		}
		ports[p.port] = p.name
	}
	for _, v := range []struct {
		name string
		v    int
	}{{"max_pending", a.MaxPending}, {"send_hwm", a.SendHWM}, {"receive_hwm", a.ReceiveHWM}} {
		if v.v < 1 {
			errs = append(errs, fmt.Errorf("%s %d: must be at least 1", v.name, v.v))
		}
	}
	if d := a.HeartbeatTimeout.D(); d != 0 && d < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat_timeout %s: want 0 (never) or at least 100ms; clients heartbeat every 5s", d))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("zmq: %w", err)
	}
	if a.st == nil {
		a.st = newState(a.MaxPending)
	}
	return nil
}

// checkHost accepts "*", an IP literal or a syntactically valid host name.
func checkHost(h string) error {
	switch h {
	case "*":
		return nil
	case "":
		return errors.New(`host is empty: want an IP, a host name or "*"`)
	}
	return config.CheckHost(h)
}

// Ports returns the ports the sockets are bound to (the configured ones, or
// those picked for 0), and zeros before the app first bound them.
func (a *App) Ports() (manage, pub, sub int) {
	if a.st == nil {
		return 0, 0, 0
	}
	return int(a.st.ports[0].Load()), int(a.st.ports[1].Load()), int(a.st.ports[2].Load())
}

// Ready reports whether the sockets are bound and served (the bus's
// readiness check).
func (a *App) Ready() error {
	if a.st == nil || !a.st.listening.Load() {
		return errors.New("zmq: not listening")
	}
	return nil
}

// Run implements plugins.App. It binds the sockets and serves until ctx is
// cancelled, then closes them within a few hundred milliseconds. The
// subscriptions it made outlive it: a later Run on the same App (after a
// restart by the bus) serves them again, and apps reconnect on their own.
func (a *App) Run(ctx context.Context, bus plugins.Bus) error {
	st := a.st
	if st == nil {
		return errors.New("zmq: Run before Init")
	}
	select {
	case st.running <- struct{}{}:
		defer func() {
			<-st.running
			st.serveIdle() // what was posted after our last look
		}()
	case <-ctx.Done():
		return nil // an earlier Run has not let go yet, and we are asked to stop
	}
	log := bus.Logger()
	st.setLog(log)
	hosts, err := a.bindHosts(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	zctx, err := zmq4.NewContext()
	if err != nil {
		return fmt.Errorf("zmq: new context: %w", err)
	}
	s, err := a.openSockets(zctx, hosts)
	if err != nil {
		_ = zctx.Term()
		return err
	}
	st.listening.Store(true)
	defer st.listening.Store(false)
	manage, pub, sub := a.Ports()
	log.Info("zmq app listening", "host", a.Host, "manage", manage, "pub", pub, "sub", sub)

	// Apps could not heartbeat while we were down: give every surviving
	// subscription a full timeout from now.
	st.touchAll(time.Now())

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	loops := []func(context.Context) error{
		func(ctx context.Context) error { return a.serveManage(ctx, bus, s.manage) },
		func(ctx context.Context) error { return st.servePub(ctx, s.pub) },
		func(ctx context.Context) error { return a.serveSub(ctx, bus, s.sub) },
	}
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(runCtx); err != nil && runCtx.Err() == nil {
				errc <- err
				cancel()
			}
		}()
	}
	<-runCtx.Done()
	wg.Wait()
	// The loops are gone: what the manage loop ended after the pub loop's
	// last look is discarded and logged here.
	st.serveEvents(nil)
	st.finishAll()
	if err := zctx.Term(); err != nil {
		log.Warn("terminating the zmq context", "error", err)
	}
	st.logStats(log, "subscription dropped messages (totals at stop)", true)
	log.Info("zmq app stopped")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// sockets are one Run's sockets. Each is handed to the one goroutine that
// uses and closes it.
type sockets struct {
	manage, pub, sub *zmq4.Socket
}

// Socket options. The linger bounds how long closing may wait: none for
// requests and what apps publish, a moment for frames already queued to
// apps.
const (
	pubLinger  = 200 * time.Millisecond
	pollPeriod = 50 * time.Millisecond // how often idle loops look at ctx
)

func (a *App) openSockets(zctx *zmq4.Context, hosts []string) (_ *sockets, err error) {
	s := &sockets{}
	var opened []*zmq4.Socket
	defer func() {
		if err != nil {
			for _, so := range opened {
				_ = so.SetLinger(0)
				_ = so.Close()
			}
		}
	}()
	open := func(t zmq4.Type, linger time.Duration) (*zmq4.Socket, error) {
		so, err := zctx.NewSocket(t)
		if err != nil {
			return nil, fmt.Errorf("zmq: new %s socket: %w", t, err)
		}
		opened = append(opened, so)
		if err := so.SetLinger(linger); err != nil {
			return nil, fmt.Errorf("zmq: set linger: %w", err)
		}
		return so, nil
	}
	st := a.st
	if s.manage, err = open(zmq4.REP, 0); err != nil {
		return nil, err
	}
	if s.pub, err = open(zmq4.XPUB, pubLinger); err != nil {
		return nil, err
	}
	// Verbose subscribe and unsubscribe events tell which apps are
	// connected; NODROP turns a full queue into EAGAIN, so nothing is lost
	// silently.
	for _, set := range []func() error{
		func() error { return s.pub.SetXpubVerboser(1) },
		func() error { return s.pub.SetXpubNodrop(true) },
		func() error { return s.pub.SetSndhwm(a.SendHWM) },
	} {
		if err := set(); err != nil {
			return nil, fmt.Errorf("zmq: configure the pub socket: %w", err)
		}
	}
	if s.sub, err = open(zmq4.SUB, 0); err != nil {
		return nil, err
	}
	if err := s.sub.SetRcvhwm(a.ReceiveHWM); err != nil {
		return nil, fmt.Errorf("zmq: configure the sub socket: %w", err)
	}
	// libzmq drops a peer that sends more than the sub loop takes.
	if err := s.sub.SetMaxmsgsize(zmqbatch.MaxSize); err != nil {
		return nil, fmt.Errorf("zmq: configure the sub socket: %w", err)
	}
	for _, f := range []string{topicSTIXPrefix, topicSnapshotEnvelope} {
		if err := s.sub.SetSubscribe(f); err != nil {
			return nil, fmt.Errorf("zmq: subscribe the sub socket to %s: %w", f, err)
		}
	}
	for i, b := range []struct {
		so   *zmq4.Socket
		port int
	}{{s.manage, a.Manage}, {s.pub, a.Pub}, {s.sub, a.Sub}} {
		if p := st.ports[i].Load(); p != 0 {
			b.port = int(p) // a restart keeps the ports apps know
		}
		port, err := bindAll(b.so, hosts, b.port, st.logger())
		if err != nil {
			return nil, err
		}
		st.ports[i].Store(int32(port))
	}
	return s, nil
}

// bindAll binds so to port on every host and returns the port bound (the
// one picked when port is 0). An address that cannot be bound is skipped
// with a warning as long as another one was (a host name may resolve to ::1
// on a machine without IPv6).
func bindAll(so *zmq4.Socket, hosts []string, port int, log *slog.Logger) (int, error) {
	bound := 0
	var firstErr error
	for _, h := range hosts {
		if strings.Contains(h, ":") {
			if err := so.SetIpv6(true); err != nil {
				return 0, fmt.Errorf("zmq: enable IPv6: %w", err)
			}
		}
		p := "*"
		if port != 0 {
			p = strconv.Itoa(port)
		}
		host := h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
		ep := "tcp://" + host + ":" + p
		if err := so.Bind(ep); err != nil {
			err = fmt.Errorf("zmq: bind %s: %w", ep, err)
			if firstErr == nil {
				firstErr = err
			}
			if len(hosts) > 1 {
				log.Warn("an address of the host cannot be bound; skipping it", "error", err)
			}
			continue
		}
		bound++
		if port == 0 {
			last, err := so.GetLastEndpoint()
			if err != nil {
				return 0, fmt.Errorf("zmq: bound port of %s: %w", ep, err)
			}
			n, err := strconv.Atoi(last[strings.LastIndexByte(last, ':')+1:])
			if err != nil {
				return 0, fmt.Errorf("zmq: bound port of %s: %q", ep, last)
			}
			port = n
		}
	}
	if bound == 0 {
		return 0, firstErr
	}
	return port, nil
}

// bindHosts resolves the configured host to the addresses to bind.
func (a *App) bindHosts(ctx context.Context) ([]string, error) {
	if a.Host == "*" {
		return []string{"*"}, nil
	}
	if ip := net.ParseIP(a.Host); ip != nil {
		return []string{ip.String()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, a.Host)
	if err != nil {
		return nil, fmt.Errorf("zmq: resolve host %q: %w", a.Host, err)
	}
	var out []string
	seen := map[string]bool{}
	for _, ad := range addrs {
		if s := ad.IP.String(); !seen[s] && ad.Zone == "" {
			seen[s] = true
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("zmq: host %q resolves to no address", a.Host)
	}
	return out, nil
}

// state is what outlives one Run: the subscriptions and what is queued for
// them, the bound ports and the counters.
type state struct {
	maxPending int64

	mu      sync.Mutex
	clients map[string]*client   // by private topic
	events  []outFrame           // posted for the holder of the frames: snapshot requests, ends
	ending  map[*client]struct{} // ended, totals not logged yet

	// running is held by the one Run at a time, and with it the clients'
	// held frames (client.pending and what goes with it), which its pub
	// loop handles; between Runs serveIdle takes it for a moment to handle
	// posted events.
	running chan struct{}

	out  chan outFrame // sinks → the pub loop
	wake chan struct{} // events were posted
	gen  atomic.Uint64

	ports     [3]atomic.Int32 // manage, pub, sub
	listening atomic.Bool

	snapshots *idSet
	echoes    *echoTable

	logMu sync.Mutex
	log   *slog.Logger

	rejected  *tally
	accepted  atomic.Uint64
	expired   atomic.Uint64
	envelopes atomic.Uint64
}

func newState(maxPending int) *state {
	return &state{
		maxPending: int64(maxPending),
		clients:    map[string]*client{},
		ending:     map[*client]struct{}{},
		running:    make(chan struct{}, 1),
		out:        make(chan outFrame, 4096),
		wake:       make(chan struct{}, 1),
		snapshots:  newIDSet(snapshotMemory, snapshotIDs),
		echoes:     newEchoTable(echoMemory, echoEntries),
		rejected:   newTally(),
		log:        slog.New(slog.DiscardHandler),
	}
}

func (s *state) setLog(l *slog.Logger) {
	s.logMu.Lock()
	s.log = l
	s.logMu.Unlock()
}

func (s *state) logger() *slog.Logger {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log
}

func isEAGAIN(err error) bool {
	return zmq4.AsErrno(err) == zmq4.Errno(syscall.EAGAIN)
}
