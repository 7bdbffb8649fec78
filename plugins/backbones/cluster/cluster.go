// Package cluster is the cluster backbone: several bus processes, on one host
// or many, act as one bus. Membership comes from protoactor-go's cluster
// providers (automanaged or etcd); messages travel over protoactor's remote
// (gRPC), from the bus actor of the member they were published on straight
// to the bus actor of every other member, once, with acknowledgement and
// retry. Receivers deliver locally and never forward again.
//
// The package owns its own protoactor ActorSystem (remote and cluster
// inside); nothing of it leaks into the plugin contract. It must not use
// protoactor's cluster pub/sub or broadcast routers on the message path (see
// /work/shared/architecture.md for why).
package cluster

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/cluster"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

//go:embed sample.conf
var sampleConfig string

// Name is the plugin's registry key and config table name.
const Name = "cluster"

func init() {
	plugins.AddBackbone(Name, func() plugins.Backbone { return newDefaults() })
}

// Backbone is the cluster backbone. Its exported fields are the
// [backbones.cluster] table.
type Backbone struct {
	ClusterName string      `toml:"cluster_name"`
	Bind        string      `toml:"bind"`
	Advertise   string      `toml:"advertise"`
	Provider    string      `toml:"provider"`
	Automanaged Automanaged `toml:"automanaged"`
	Etcd        Etcd        `toml:"etcd"`
	TLS         TLS         `toml:"tls"`
	// Buffer bounds each peer's queue of unacknowledged forwards.
	Buffer int `toml:"buffer"`
	// Batch is the most envelopes one Forward carries.
	Batch int `toml:"batch"`
	// AckTimeout is how long a Forward waits for its ack before it is sent
	// again.
	AckTimeout config.Duration `toml:"ack_timeout"`
	// PingInterval is how often each peer is asked how it sees this member.
	PingInterval config.Duration `toml:"ping_interval"`
	// RejoinAfter: when for this long no peer counts this member as a member
	// (while this member sees peers), it rejoins.
	RejoinAfter config.Duration `toml:"rejoin_after"`

	cfg *settings
	lg  atomic.Pointer[slog.Logger]

	// life serialises Start and Stop: Start no longer holds mu while it
	// joins (up to etcd.dial_timeout), so that Status and Ready answer.
	life sync.Mutex
	mu   sync.Mutex
	run  *run

	// Totals over every run, by reason.
	dropMu  sync.Mutex
	dropped map[string]uint64
	rejoins atomic.Uint64
	// lastRejoin is why and when this member last rejoined (dropMu).
	lastRejoin   string
	lastRejoinAt time.Time
}

// SampleConfig implements plugins.Plugin.
func (*Backbone) SampleConfig() string { return sampleConfig }

// SetLogger implements plugins.LogReceiver: the bus hands over its logger,
// with the plugin attribute set, before Start. Until it is called the plugin
// logs to slog.Default().
func (b *Backbone) SetLogger(l *slog.Logger) { b.lg.Store(l) }

func (b *Backbone) logger() *slog.Logger {
	if l := b.lg.Load(); l != nil {
		return l
	}
	l := slog.Default().With("plugin", Name)
	b.lg.CompareAndSwap(nil, l)
	return b.lg.Load()
}

func (b *Backbone) drop(reason string, n uint64) {
	if n == 0 {
		return
	}
	b.dropMu.Lock()
	if b.dropped == nil {
		b.dropped = map[string]uint64{}
	}
	b.dropped[reason] += n
	b.dropMu.Unlock()
}

// Errors of Publish and Start.
var (
	errStopped = errors.New("cluster: backbone is not started")
	errStarted = errors.New("cluster: already started")
)

// run is one Start…Stop of the backbone. It outlives rejoins: the member
// incarnation inside it changes, the peers' queues stay.
type run struct {
	b       *Backbone
	deliver func(*messages.Envelope)

	mu      sync.Mutex
	mem     *member               // nil while (re)joining
	members map[string]memberView // the current topology, this member included
	peers   map[string]*peer
	state   string
	reason  string // why not joined, or the last rejoin's cause
	stopped bool

	rejoin   chan rejoinReq
	stop     chan struct{}
	keeperWG sync.WaitGroup

	received, faults atomic.Uint64
	// resent counts envelopes of batches a peer sent again after this
	// member had delivered them (the ack was lost or late).
	resent atomic.Uint64
}

type rejoinReq struct {
	m      *member
	reason string
}

type memberView struct {
	id, address string
	since       time.Time
}

func (r *run) log() *slog.Logger { return r.b.logger() }

// Start implements plugins.Backbone: it starts this member and returns once
// it has joined the cluster provider (peers may still be on their way). With
// etcd, it gives up when etcd has not answered within etcd.dial_timeout.
func (b *Backbone) Start(_ context.Context, deliver func(*messages.Envelope)) error {
	if b.cfg == nil {
		if err := b.Init(); err != nil {
			return &plugins.ConfigError{Err: err}
		}
	}
	b.life.Lock()
	defer b.life.Unlock()
	b.mu.Lock()
	if b.run != nil {
		b.mu.Unlock()
		return errStarted
	}
	r := &run{b: b, deliver: deliver, members: map[string]memberView{}, peers: map[string]*peer{},
		state: "joining", rejoin: make(chan rejoinReq, 1), stop: make(chan struct{})}
	// In place while it joins, so that Status and Ready say "joining".
	b.run = r
	b.mu.Unlock()
	m, err := r.startMember()
	if err != nil {
		b.mu.Lock()
		b.run = nil
		b.mu.Unlock()
		r.discard()
		return fmt.Errorf("cluster: %w", err)
	}
	r.log().Info("joined cluster", "member", m.id, "address", m.address, "cluster", b.ClusterName, "provider", b.Provider)
	r.keeperWG.Add(1)
	go r.keeper()
	return nil
}

// discard ends a run whose member did not join: the senders of the peers
// the provider reported meanwhile stop (nothing was queued for them: Start
// had not returned).
func (r *run) discard() {
	r.mu.Lock()
	r.stopped = true
	peers := r.peers
	r.peers = map[string]*peer{}
	r.mu.Unlock()
	close(r.stop)
	for _, p := range peers {
		close(p.stop)
		<-p.stopped
	}
}

// Publish implements plugins.Backbone: the envelope is delivered locally at
// once, then queued for every peer.
func (b *Backbone) Publish(_ context.Context, env *messages.Envelope) error {
	b.mu.Lock()
	r := b.run
	b.mu.Unlock()
	if r == nil {
		return errStopped
	}
	r.deliver(env)
	size := forwardSize(env)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.peers {
		var reason string
		switch {
		case size > maxForwardBytes:
			reason = "too_large" // a Forward of it alone would not fit
		case !p.q.push(env, size):
			reason = "overflow"
		default:
			continue
		}
		p.logDrop(r.log(), reason, 1)
		b.drop(reason, 1)
	}
	return nil
}

// leaveGrace is the least time a member waits for etcd as it leaves, even
// when the stop deadline has passed (peers that did not acknowledge took
// it): enough to deregister from a healthy etcd, so that peers drop this
// member at once rather than when its lease expires.
const leaveGrace = 250 * time.Millisecond

// Stop implements plugins.Backbone: it waits, within ctx, until every peer
// has acknowledged what was queued for it, then leaves the cluster. What is
// still unacknowledged then is counted as dropped and reported. It returns
// within ctx's deadline and leaveGrace, even while a peer or etcd does not
// answer.
func (b *Backbone) Stop(ctx context.Context) error {
	b.life.Lock()
	defer b.life.Unlock()
	b.mu.Lock()
	r := b.run
	b.run = nil
	b.mu.Unlock()
	if r == nil {
		return nil
	}
	var errs []error
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
wait:
	for r.pending() > 0 {
		select {
		case <-ctx.Done():
			break wait
		case <-tick.C:
		}
	}
	// The keeper gives up a rejoin in progress when stop closes.
	close(r.stop)
	r.keeperWG.Wait()
	r.mu.Lock()
	r.stopped = true
	m := r.mem
	r.mem = nil
	peers := r.peers
	r.peers = map[string]*peer{}
	r.mu.Unlock()
	left := map[string]int{}
	// A sender waiting for an ack stops waiting when its peer's stop closes.
	for _, p := range peers {
		close(p.stop)
	}
	for _, p := range peers {
		<-p.stopped
		if n := p.q.clear(); n > 0 {
			left[p.id] = n
			p.drop("shutdown", uint64(n))
			b.drop("shutdown", uint64(n))
		}
		p.flushDrops(r.log())
	}
	if m != nil {
		leaveBy := time.Now().Add(max(b.cfg.etcdDial, leaveGrace))
		if dl, ok := ctx.Deadline(); ok {
			leaveBy = dl
		}
		if soon := time.Now().Add(leaveGrace); leaveBy.Before(soon) {
			leaveBy = soon
		}
		m.stop(leaveBy, nil)
	}
	for id, n := range left {
		errs = append(errs, fmt.Errorf("cluster: %d messages not acknowledged by member %s before the stop deadline (dropped)", n, id))
	}
	r.log().Info("left cluster")
	return errors.Join(errs...)
}

// pending is the number of queued, unacknowledged forwards.
func (r *run) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.peers {
		n += p.q.len()
	}
	return n
}

// Ready implements plugins.Checker.
func (b *Backbone) Ready() error {
	b.mu.Lock()
	r := b.run
	b.mu.Unlock()
	if r == nil {
		return errStopped
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mem == nil && r.state == "rejoining" {
		return fmt.Errorf("cluster: rejoining: %s", r.reason)
	}
	if r.mem == nil {
		return fmt.Errorf("cluster: joining cluster %q", r.b.ClusterName)
	}
	if !r.hasMember(r.mem.id) {
		return fmt.Errorf("cluster: member %s has not joined cluster %q yet", r.mem.id, r.b.ClusterName)
	}
	return nil
}

func (r *run) setMember(m *member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mem = m
	r.state = "joining"
	r.members = map[string]memberView{}
}

func (r *run) clearMember(m *member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mem == m {
		r.mem = nil
	}
	for _, p := range r.peers {
		if p.mem.Load() == m {
			p.setMember(nil)
		}
	}
}

// onTopology follows the provider's view of the cluster: new peers get a
// queue and a sender; peers that left lose theirs, and what was queued for
// them is counted as dropped.
func (r *run) onTopology(m *member, t *cluster.ClusterTopology) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mem != m || r.stopped {
		return
	}
	now := time.Now()
	next := make(map[string]memberView, len(t.Members))
	for _, mb := range t.Members {
		v := memberView{id: mb.Id, address: mb.Address(), since: now}
		if old, ok := r.members[mb.Id]; ok {
			v.since = old.since
		}
		next[mb.Id] = v
	}
	r.members = next
	if r.hasMember(m.id) && m.joinedAt.Load() == 0 {
		m.joinedAt.Store(now.UnixNano())
	}
	if r.hasMember(m.id) && r.state != "joined" {
		r.state = "joined"
		r.reason = ""
	}
	for id, v := range next {
		if sameMember(id, m.id) {
			continue
		}
		p, ok := r.peers[id]
		if !ok {
			p = newPeer(id, v.address, r.b.Buffer)
			p.lastAck.Store(0)
			r.peers[id] = p
			go r.send(p)
			r.log().Info("peer joined", "member", m.id, "peer", id, "address", v.address)
		}
		if p.mem.Load() != m {
			p.setMember(m)
		}
	}
	for id, p := range r.peers {
		if _, ok := next[id]; ok {
			continue
		}
		delete(r.peers, id)
		close(p.stop)
		n := p.q.clear()
		p.drop("peer_left", uint64(n))
		r.b.drop("peer_left", uint64(n))
		p.flushDrops(r.log())
		r.log().Warn("peer left the cluster; its queue is dropped", "member", m.id, "peer", id, "address", p.address, "dropped", n)
	}
}

// view says how this member sees member id: in its topology, or blocked for
// good (evicted).
func (r *run) view(m *member, id string) (knows, blocked bool) {
	r.mu.Lock()
	knows = r.hasMember(id)
	r.mu.Unlock()
	if rem := m.cl.Remote; rem != nil {
		bl := rem.BlockList()
		blocked = bl.IsBlocked(id) || bl.IsBlocked(r.b.ClusterName+"@"+id)
	}
	return knows, blocked
}

// hasMember reports whether the topology holds the member whose actor
// system id is id. Call with r.mu held.
func (r *run) hasMember(id string) bool {
	if _, ok := r.members[id]; ok {
		return true
	}
	_, ok := r.members[r.b.ClusterName+"@"+id]
	return ok
}

// sameMember: providers name members differently (automanaged by the actor
// system id, etcd as "<cluster>@<id>").
func sameMember(memberID, systemID string) bool {
	return memberID == systemID || strings.HasSuffix(memberID, "@"+systemID)
}

// evicted asks the keeper to restart member m under a new id.
func (r *run) evicted(m *member, reason string) {
	select {
	case r.rejoin <- rejoinReq{m: m, reason: reason}:
	default:
	}
}

// keeper rejoins the cluster when the current incarnation was evicted.
func (r *run) keeper() {
	defer r.keeperWG.Done()
	for {
		select {
		case <-r.stop:
			return
		case req := <-r.rejoin:
			r.mu.Lock()
			cur := r.mem
			r.mu.Unlock()
			if req.m != cur || cur == nil {
				continue // a stale request from an incarnation already replaced
			}
			r.b.rejoins.Add(1)
			r.b.dropMu.Lock()
			r.b.lastRejoin, r.b.lastRejoinAt = req.reason, time.Now()
			r.b.dropMu.Unlock()
			r.log().Warn("this member was evicted from the cluster; rejoining under a new id", "member", cur.id, "reason", req.reason)
			r.mu.Lock()
			r.reason = req.reason
			r.state = "rejoining"
			r.mu.Unlock()
			r.clearMember(cur)
			// Leaving and joining give up when Stop closes r.stop.
			cur.stop(time.Now().Add(max(r.b.cfg.etcdDial, leaveGrace)), r.stop)
			for attempt := 1; ; attempt++ {
				select {
				case <-r.stop:
					return
				default:
				}
				m, err := r.startMember()
				if err == nil {
					r.log().Warn("rejoined the cluster", "member", m.id, "previous", cur.id, "address", m.address)
					break
				}
				select {
				case <-r.stop: // given up because the backbone stops
					return
				default:
				}
				r.log().Error("rejoin failed; retrying", "attempt", attempt, "error", err)
				r.mu.Lock()
				r.reason = "rejoin failed: " + err.Error()
				r.mu.Unlock()
				select {
				case <-r.stop:
					return
				case <-time.After(time.Duration(min(attempt, 10)) * 500 * time.Millisecond):
				}
			}
		}
	}
}

// Status is the backbone's state for /api/v1/status and /metrics.
type Status struct {
	// Member is this member's current incarnation and Address where it
	// listens: both empty until it listens, and while rejoining.
	Member  string `json:"member"`
	Address string `json:"address"`
	Cluster string `json:"cluster"`
	// Provider is "automanaged" or "etcd".
	Provider string `json:"provider"`
	// State is "stopped", "joining", "joined" or "rejoining".
	State string `json:"state"`
	// Reason says why the member is not joined.
	Reason string `json:"reason,omitempty"`
	// Rejoins counts the times this member found itself evicted and
	// rejoined under a new id; LastRejoin says why, at LastRejoinAt.
	Rejoins      uint64         `json:"rejoins"`
	LastRejoin   string         `json:"last_rejoin,omitempty"`
	LastRejoinAt time.Time      `json:"last_rejoin_at,omitempty"`
	Members      []MemberStatus `json:"members"`
	Peers        []PeerStatus   `json:"peers"`
	// Received counts envelopes peers forwarded to this member.
	Received uint64 `json:"received"`
	// Faults counts refused input from peers (bad envelopes, versions).
	Faults uint64 `json:"faults"`
	// Resent counts envelopes of batches a peer sent again after they were
	// delivered here (a lost or late ack); they are acknowledged, not
	// delivered twice.
	Resent uint64 `json:"resent"`
	// Dropped totals the peers' drops since the process started, by reason:
	// "overflow" (a peer's queue was full), "too_large" (an envelope over
	// 3 MiB, delivered on this member only), "peer_left" (queued for a
	// member that left), "shutdown" (unacknowledged at the stop deadline),
	// "refused" (the peer rejected the batch).
	Dropped map[string]uint64 `json:"dropped"`
}

// MemberStatus is one member of the current topology.
type MemberStatus struct {
	ID      string    `json:"id"`
	Address string    `json:"address"`
	State   string    `json:"state"` // "self" or "alive"
	Since   time.Time `json:"since"`
}

// PeerStatus is the forwarding state toward one other member.
type PeerStatus struct {
	ID      string    `json:"id"`
	Address string    `json:"address"`
	Since   time.Time `json:"since"`
	// KnowsUs: the peer counted this member as a member at the last ping or
	// ack.
	KnowsUs   bool              `json:"knows_us"`
	Forwarded uint64            `json:"forwarded"`
	Acked     uint64            `json:"acked"`
	Retried   uint64            `json:"retried"`
	Dropped   map[string]uint64 `json:"dropped"`
	Queued    int               `json:"queued"`
	LastError string            `json:"last_error,omitempty"`
}

// Status returns the backbone's state. Safe for concurrent use.
func (b *Backbone) Status() Status {
	st := Status{Cluster: b.ClusterName, Provider: b.Provider, State: "stopped", Rejoins: b.rejoins.Load(),
		Members: []MemberStatus{}, Peers: []PeerStatus{}, Dropped: map[string]uint64{}}
	b.dropMu.Lock()
	for k, v := range b.dropped {
		st.Dropped[k] = v
	}
	st.LastRejoin, st.LastRejoinAt = b.lastRejoin, b.lastRejoinAt
	b.dropMu.Unlock()
	b.mu.Lock()
	r := b.run
	b.mu.Unlock()
	if r == nil {
		return st
	}
	st.Received, st.Faults, st.Resent = r.received.Load(), r.faults.Load(), r.resent.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	st.State, st.Reason = r.state, r.reason
	if r.mem != nil && r.mem.address != "" {
		st.Member, st.Address = r.mem.id, r.mem.address
	}
	for _, v := range r.members {
		state := "alive"
		if r.mem != nil && sameMember(v.id, r.mem.id) {
			state = "self"
		}
		st.Members = append(st.Members, MemberStatus{ID: v.id, Address: v.address, State: state, Since: v.since})
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Address < st.Members[j].Address })
	for _, p := range r.peers {
		ps := PeerStatus{ID: p.id, Address: p.address, Since: p.since, KnowsUs: p.knowsUs.Load(),
			Forwarded: p.forwarded.Load(), Acked: p.acked.Load(), Retried: p.retried.Load(),
			Dropped: p.drops(), Queued: p.q.len()}
		if e := p.lastErr.Load(); e != nil {
			ps.LastError = *e
		}
		st.Peers = append(st.Peers, ps)
	}
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Address < st.Peers[j].Address })
	return st
}

// The interfaces the bus looks for.
var (
	_ plugins.Backbone    = (*Backbone)(nil)
	_ plugins.Checker     = (*Backbone)(nil)
	_ plugins.LogReceiver = (*Backbone)(nil)
)

var _ plugins.Reporter = (*Backbone)(nil)

// Report implements plugins.Reporter: Status as the plugin's details, and
// metrics. Peer metrics are labelled with the peer's address, which stays
// the same when the peer rejoins under a new id (its counters then start
// again, as a counter reset).
func (b *Backbone) Report() plugins.Report {
	st := b.Status()
	var m []plugins.Metric
	gauge := func(name, help string, v float64, labels map[string]string) {
		m = append(m, plugins.Metric{Name: "cluster_" + name, Help: help, Labels: labels, Value: v})
	}
	counter := func(name, help string, v uint64, labels map[string]string) {
		m = append(m, plugins.Metric{Name: "cluster_" + name, Help: help, Counter: true, Labels: labels, Value: float64(v)})
	}
	joined := 0.0
	if st.State == "joined" {
		joined = 1
	}
	gauge("joined", "1 while this member is joined to the cluster.", joined, nil)
	gauge("members", "Members of the cluster as this member sees it, itself included.", float64(len(st.Members)), nil)
	counter("rejoins_total", "Times this member found itself evicted and rejoined.", st.Rejoins, nil)
	counter("received_total", "Envelopes other members forwarded to this one.", st.Received, nil)
	counter("faults_total", "Refused input from other members.", st.Faults, nil)
	counter("resent_received_total", "Envelopes of batches a peer sent again after they were delivered here.", st.Resent, nil)
	for reason, n := range st.Dropped {
		counter("dropped_total", "Forwards not delivered to a member, by reason.", n, map[string]string{"reason": reason})
	}
	type peerSum struct {
		forwarded, acked, retried uint64
		queued                    int
		knowsUs                   bool
	}
	peers := map[string]*peerSum{}
	for _, p := range st.Peers { // one entry per address, even mid-rejoin
		s := peers[p.Address]
		if s == nil {
			s = &peerSum{}
			peers[p.Address] = s
		}
		s.forwarded += p.Forwarded
		s.acked += p.Acked
		s.retried += p.Retried
		s.queued += p.Queued
		s.knowsUs = s.knowsUs || p.KnowsUs
	}
	for addr, s := range peers {
		l := map[string]string{"peer": addr}
		counter("peer_forwarded_total", "Envelopes sent to a peer (retries are counted in peer_retried_total).", s.forwarded, l)
		counter("peer_acked_total", "Envelopes a peer acknowledged.", s.acked, l)
		counter("peer_retried_total", "Envelopes sent to a peer again after an ack timeout.", s.retried, l)
		gauge("peer_queue_messages", "Envelopes waiting to be sent to or acknowledged by a peer.", float64(s.queued), l)
		knows := 0.0
		if s.knowsUs {
			knows = 1
		}
		gauge("peer_knows_us", "1 when the peer counted this member as a member at the last ping.", knows, l)
	}
	return plugins.Report{Details: st, Metrics: m}
}
