package cluster

import (
	"context"
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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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
	provider cluster.ClusterProvider
	etcdProv *etcd.Provider
	bus      *actor.PID
	topoSub  *eventstream.Subscription
	id       string
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

	opts := []remote.ConfigOption{}
	if s.clientTLS != nil {
		opts = append(opts,
			remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(s.clientTLS))),
			remote.WithServerOptions(grpc.Creds(credentials.NewTLS(s.serverTLS))))
	} else {
		opts = append(opts, remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	if s.advertise != "" {
		opts = append(opts, remote.WithAdvertisedHost(s.advertise))
	}
	rc := remote.Configure(s.bindHost, s.bindPort, opts...)
	// An endpoint writer that cannot connect blocks its actor for 2s per
	// attempt; the peer's own queue (ours) is what must hold messages, not
	// the library's, so give up after one.
	rc.MaxRetryCount = 1

	switch b.Provider {
	case ProviderEtcd:
		p, err := etcd.NewWithConfig(b.Etcd.BaseKey, clientv3.Config{
			Endpoints:   b.Etcd.Endpoints,
			DialTimeout: s.etcdDial,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			system.Shutdown()
			return nil, fmt.Errorf("etcd %s: %w", strings.Join(b.Etcd.Endpoints, ","), err)
		}
		m.provider, m.etcdProv = p, p
	default:
		m.provider = automanaged.NewWithConfig(s.refresh, b.Automanaged.Port, b.Automanaged.Hosts...)
	}
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
			m.teardown(phase)
		}
	}()
	phase = "join cluster"
	m.cl.StartMember()
	m.address = system.Address()
	pid, spawnErr := system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &busActor{r: r, m: m} }), busActorName)
	if spawnErr != nil {
		panic(spawnErr)
	}
	m.bus = pid
	go r.watch(m)
	return m, nil
}

// forward sends one batch and waits for the ack.
func (m *member) forward(p *peer, msg *Forward) (*ForwardAck, error) {
	target := actor.NewPID(p.address, busActorName)
	res, err := m.system.Root.RequestFuture(target, msg, m.r.b.cfg.ackTimeout).Result()
	if err != nil {
		return nil, err
	}
	ack, ok := res.(*ForwardAck)
	if !ok {
		return nil, fmt.Errorf("unexpected reply %T", res)
	}
	return ack, nil
}

// stop ends the incarnation: the bus actor first, then the provider (it
// deregisters), gossip and identity lookup, remote, and the actor system.
func (m *member) stop() {
	close(m.stopping)
	if m.bus != nil {
		_ = m.system.Root.PoisonFuture(m.bus).Wait()
	}
	<-m.done
	m.teardown("")
}

func (m *member) teardown(phase string) {
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
		safe("provider", func() { _ = m.provider.Shutdown(true) })
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
	if m.etcdProv != nil {
		closeEtcdClient(m.etcdProv)
	}
}

// closeEtcdClient closes the etcd provider's client, which the provider's
// Shutdown leaves open (its goroutines and connection would leak on every
// rejoin and restart). The field is unexported; reach it by reflection.
func closeEtcdClient(p *etcd.Provider) {
	f := reflect.ValueOf(p).Elem().FieldByName("client")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*clientv3.Client)(nil)) {
		return
	}
	c := *(**clientv3.Client)(unsafe.Pointer(f.UnsafeAddr()))
	if c != nil {
		_ = c.Close()
	}
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
