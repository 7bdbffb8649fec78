package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// busActorName is the name of the bus actor on every member: peers address
// it as host:port/busActorName.
const busActorName = "threatbus-cluster"

// member is one incarnation of this bus in the cluster: an actor system with
// remote and cluster, and the bus actor. A member that was evicted cannot come
// back under its id (the others block it for good), so rejoining means
// stopping this incarnation and starting a new one, with a new id.
type member struct {
	r        *run
	system   *actor.ActorSystem
	cl       *cluster.Cluster
	provider *membership
	bus      *actor.PID
	topoSub  *eventstream.Subscription
	id       string
	// address is where this incarnation listens: set (under r.mu) once the
	// remote listens, before the provider starts.
	address  string
	started  time.Time
	joinedAt atomic.Int64 // unix nanos of the first topology that lists this member
	// batches numbers the Forward batches this incarnation sends, to every
	// peer: upwards per sender id, whichever peer object sends them, which
	// is what the receivers' resend check relies on.
	batches  atomic.Uint64
	stopping chan struct{}
	done     chan struct{} // the watcher has returned
}

// startMember starts an incarnation and returns once it has joined the
// cluster provider. Setup failures inside protoactor are panics there; they
// come back as errors here.
func (r *run) startMember() (m *member, err error) {
	b := r.b
	s := b.cfg
	lib := slog.New(&levelHandler{min: slog.LevelWarn, h: r.log().Handler()}).With("lib", "protoactor")
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return lib }))
	m = &member{r: r, system: system, id: system.ID, started: time.Now(), stopping: make(chan struct{}), done: make(chan struct{})}

	// gRPC's default receive limit (4 MiB) is below what a Forward and what
	// travels with it may take (see maxRecvBytes).
	serverOpts := []grpc.ServerOption{grpc.MaxRecvMsgSize(maxRecvBytes)}
	opts := []remote.ConfigOption{}
	if s.clientTLS != nil {
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(s.serverTLS)))
		opts = append(opts, remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(s.clientTLS))))
	} else {
		opts = append(opts, remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	opts = append(opts, remote.WithServerOptions(serverOpts...)) // one call: each replaces the list
	if s.advertise != "" {
		opts = append(opts, remote.WithAdvertisedHost(s.advertise))
	}
	rc := remote.Configure(s.bindHost, s.bindPort, opts...)
	// An endpoint writer that cannot connect blocks its actor for 2s per
	// attempt; the peer's own queue (ours) is what must hold messages, not
	// the library's, so give up after one.
	rc.MaxRetryCount = 1

	m.provider = newMembership(m)
	cfg := cluster.Configure(b.ClusterName, m.provider, disthash.New(), rc)
	// No gossip: membership comes from the provider and eviction is
	// detected by our own pings (watch.go). Gossip would only add the
	// library's heartbeat eviction, and its updates of the block list race
	// with the provider's reads of it (BlockList.BlockedMembers reads
	// without the lock).
	cfg.GossipInterval = 24 * time.Hour
	m.cl = cluster.New(system, cfg)

	// The topology subscription exists before the provider starts, so the
	// first topology is not missed.
	m.topoSub = system.EventStream.Subscribe(func(evt any) {
		if t, ok := evt.(*cluster.ClusterTopology); ok {
			r.onTopology(m, t)
		}
	})
	r.setMember(m)

	phase := "start"
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: %v", phase, p)
			r.clearMember(m)
			m.teardown(phase, time.Now().Add(max(s.etcdDial, leaveGrace)), nil)
		}
	}()
	phase = "join cluster"
	m.cl.StartMember() // sets m.address (membership.StartMember)
	pid, spawnErr := system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &busActor{r: r, m: m} }), busActorName)
	if spawnErr != nil {
		panic(spawnErr)
	}
	m.bus = pid
	go r.watch(m)
	return m, nil
}

// errStopping: a request's answer was not waited for: the peer's sender or
// the member is stopping.
var errStopping = errors.New("not waiting for the answer: stopping")

// forward sends one batch and waits for the ack, or until p.stop closes
// (the stop deadline has passed, or the peer left): ack_timeout may be far
// longer than what is left of the stop deadline.
func (m *member) forward(p *peer, msg *Forward) (*ForwardAck, error) {
	f := m.system.Root.RequestFuture(actor.NewPID(p.address, busActorName), msg, m.r.b.cfg.ackTimeout)
	res, err := m.result(f, p.stop)
	if err != nil {
		return nil, err
	}
	ack, ok := res.(*ForwardAck)
	if !ok {
		return nil, fmt.Errorf("unexpected reply %T", res)
	}
	return ack, nil
}

// result waits for f's answer, or until stop closes: then it gives up on f
// (errStopping).
func (m *member) result(f *actor.Future, stop <-chan struct{}) (any, error) {
	var (
		res  any
		err  error
		done = make(chan struct{})
	)
	go func() {
		res, err = f.Result()
		close(done)
	}()
	select {
	case <-done:
		return res, err
	case <-stop:
		select {
		case <-done: // answered meanwhile
			return res, err
		default:
		}
		// Stopping the future's process completes it (without an answer),
		// so that the goroutine above ends now, not at the future's timeout.
		m.system.Root.Stop(f.PID())
		<-done
		return nil, errStopping
	}
}

// stop ends the incarnation: the bus actor first, then the provider (it
// deregisters; etcd is given until leaveBy, or until abort closes), gossip
// and identity lookup, remote, and the actor system.
func (m *member) stop(leaveBy time.Time, abort <-chan struct{}) {
	close(m.stopping)
	if m.bus != nil {
		_ = m.system.Root.PoisonFuture(m.bus).Wait()
	}
	<-m.done
	m.teardown("", leaveBy, abort)
}

func (m *member) teardown(phase string, leaveBy time.Time, abort <-chan struct{}) {
	if m.topoSub != nil {
		m.system.EventStream.Unsubscribe(m.topoSub)
	}
	safe := func(what string, f func()) {
		defer func() {
			if p := recover(); p != nil && phase == "" {
				m.r.log().Warn("cluster member did not stop cleanly", "step", what, "panic", p)
			}
		}()
		f()
	}
	// Not cluster.Shutdown: with graceful=true it sleeps 2s "for ownership
	// transfer" (we own no grains) and Remote.Shutdown(true) waits up to 10s
	// for gRPC streams that peers keep open, and races (suspended flag) with
	// the stream readers; with graceful=false it leaves the provider, gossip
	// and the endpoints running. So the steps are taken here one by one.
	if m.cl != nil {
		safe("provider", func() {
			if err := m.provider.leave(leaveBy, abort); err != nil && phase == "" {
				m.r.log().Warn("could not deregister from the cluster provider; peers drop this member when its registration expires",
					"member", m.id, "error", err)
			}
		})
		safe("identity lookup", func() {
			if m.cl.IdentityLookup != nil {
				m.cl.IdentityLookup.Shutdown()
			}
		})
		safe("gossip", func() { m.cl.Gossip.Shutdown() })
		if rem := m.cl.Remote; rem != nil {
			// The endpoint writers (our gRPC client connections) are children
			// of the endpoint supervisor: stopping it closes them. Not waited
			// for: a writer still trying to connect to a dead peer sleeps 2s
			// before it handles the stop.
			for _, name := range []string{"EndpointSupervisor", "activator"} {
				pid := m.system.NewLocalPID(name)
				safe(name, func() { m.system.Root.Stop(pid) })
			}
			safe("remote", func() { rem.Shutdown(false) })
		}
	}
	m.system.Shutdown()
	if m.provider.client != nil {
		// The etcd provider's Shutdown leaves its client open (its goroutines
		// and connection would leak on every rejoin and restart).
		_ = m.provider.client.Close()
	}
}

// membership is an incarnation's cluster provider (automanaged or etcd),
// wrapped. protoactor calls StartMember once the remote listens, and that is
// when
//   - the incarnation's address is known: it is set for Status here;
//   - the etcd client may be made: remote.Start sets gRPC's global logger,
//     which gRPC goroutines read, so the client's must not run yet.
//
// The etcd provider makes its calls with context.TODO(), so they never end
// while etcd does not answer. Every unary call of its client goes through
// intercept, under calls: joining cancels calls after etcd.dial_timeout,
// leaving at the stop deadline, and either when Stop aborts them; the calls
// then fail and the provider returns.
type membership struct {
	m      *member
	inner  cluster.ClusterProvider // automanaged: from the start; etcd: made in StartMember
	client *clientv3.Client        // etcd's, once made
	// started: inner.StartMember was called (it may have failed).
	started bool
	calls   context.Context
	cancel  context.CancelFunc
}

func newMembership(m *member) *membership {
	w := &membership{m: m}
	w.calls, w.cancel = context.WithCancel(context.Background())
	if b := m.r.b; b.Provider != ProviderEtcd {
		w.inner = automanaged.NewWithConfig(b.cfg.refresh, b.Automanaged.Port, b.Automanaged.Hosts...)
	}
	return w
}

// StartMember implements cluster.ClusterProvider.
func (w *membership) StartMember(c *cluster.Cluster) error {
	r, b := w.m.r, w.m.r.b
	r.mu.Lock()
	w.m.address = c.ActorSystem.Address()
	r.mu.Unlock()
	if b.Provider != ProviderEtcd {
		w.started = true
		return w.inner.StartMember(c)
	}
	p, err := etcd.NewWithConfig(b.Etcd.BaseKey, clientv3.Config{
		Endpoints:   b.Etcd.Endpoints,
		DialTimeout: b.cfg.etcdDial,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(w.intercept)},
	})
	if err != nil {
		return fmt.Errorf("etcd %s: %w", strings.Join(b.Etcd.Endpoints, ","), err)
	}
	w.inner, w.client, w.started = p, etcdClient(p), true
	late := fmt.Sprintf("no answer within etcd.dial_timeout (%s)", b.cfg.etcdDial)
	if err := w.bounded(time.Now().Add(b.cfg.etcdDial), r.stop, late, func() error { return p.StartMember(c) }); err != nil {
		return fmt.Errorf("etcd %s: %w", strings.Join(b.Etcd.Endpoints, ","), err)
	}
	return nil
}

// StartClient implements cluster.ClusterProvider; a member never is a client.
func (w *membership) StartClient(*cluster.Cluster) error {
	return errors.New("cluster: a member is not a cluster client")
}

// Shutdown implements cluster.ClusterProvider (protoactor's cluster.Shutdown,
// which is not used: see teardown).
func (w *membership) Shutdown(bool) error {
	return w.leave(time.Now().Add(max(w.m.r.b.cfg.etcdDial, leaveGrace)), nil)
}

// leave deregisters this incarnation, giving etcd until deadline or until
// abort closes; then whatever of the provider is still running (etcd's
// keep-alive) has its calls fail.
func (w *membership) leave(deadline time.Time, abort <-chan struct{}) error {
	defer w.cancel()
	if !w.started {
		return nil // the remote did not start, nor did the provider
	}
	if w.m.r.b.Provider != ProviderEtcd {
		return w.inner.Shutdown(true)
	}
	return w.bounded(deadline, abort, "no answer by the stop deadline", func() error { return w.inner.Shutdown(true) })
}

// bounded runs f, a step of the etcd provider, until deadline (then the
// error says late) or until abort closes; then it cancels calls, which makes
// f's etcd calls fail, and returns once f has.
func (w *membership) bounded(deadline time.Time, abort <-chan struct{}, late string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("%v", p)
			}
		}()
		done <- f()
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	var why string
	select {
	case err := <-done:
		return err
	case <-t.C:
		why = late
	case <-abort:
		why = "given up: the backbone is stopping"
	}
	w.cancel()
	return fmt.Errorf("%s (%w)", why, <-done)
}

// intercept runs each unary call of the etcd client under calls as well as
// its own context. Inside etcd's retry interceptor: an abandoned call fails
// with Aborted, which it does not retry (a cancelled one it would, up to
// 100 times, since the provider's own context never ends).
func (w *membership) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(w.calls, cancel)()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil && w.calls.Err() != nil {
		return status.Error(codes.Aborted, "etcd call abandoned: "+err.Error())
	}
	return err
}

// etcdClient is the etcd provider's client, an unexported field reached by
// reflection: its Shutdown leaves it open.
func etcdClient(p *etcd.Provider) *clientv3.Client {
	f := reflect.ValueOf(p).Elem().FieldByName("client")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*clientv3.Client)(nil)) {
		return nil
	}
	return *(**clientv3.Client)(unsafe.Pointer(f.UnsafeAddr()))
}

// levelHandler passes on records at min and above: protoactor logs a great
// deal at INFO.
type levelHandler struct {
	min slog.Level
	h   slog.Handler
}

func (l *levelHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.h.Enabled(ctx, lv)
}
func (l *levelHandler) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }
func (l *levelHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return &levelHandler{min: l.min, h: l.h.WithAttrs(a)}
}
func (l *levelHandler) WithGroup(n string) slog.Handler {
	return &levelHandler{min: l.min, h: l.h.WithGroup(n)}
}
