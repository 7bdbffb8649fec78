package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// watch detects that member m was evicted, which protoactor never repairs:
// the others block an evicted member's id for good and never admit it
// again, while it may still list them. Three signs, checked every
// ping_interval:
//
//   - a peer answers a ping or an ack with blocked_you;
//   - for rejoin_after since it joined, no peer this member lists has
//     counted it as a member, while they answer (a peer whose provider
//     dropped it without blocking it);
//   - (automanaged) a member that is alive at its health endpoint, with an
//     id this member has blocked, for 2×rejoin_after: a partition that
//     healed. Both sides see that; the one with the greater id rejoins.
func (r *run) watch(m *member) {
	defer close(m.done)
	s := r.b.cfg
	tick := time.NewTicker(s.pingInterval)
	defer tick.Stop()
	liveBlocked := map[string]time.Time{}
	var lastHealth time.Time
	health := make(chan []healthNode, 1)
	var healthWG sync.WaitGroup
	defer healthWG.Wait()
	healthBusy := false
	for {
		select {
		case <-m.stopping:
			return
		case nodes := <-health:
			healthBusy = false
			r.checkLiveBlocked(m, nodes, liveBlocked)
			continue
		case <-tick.C:
		}
		r.mu.Lock()
		var peers []*peer
		for _, p := range r.peers {
			if p.mem.Load() == m {
				peers = append(peers, p)
			}
		}
		r.mu.Unlock()
		timeout := min(2*s.pingInterval, s.ackTimeout)
		futures := make([]*actor.Future, len(peers))
		for i, p := range peers {
			futures[i] = m.system.Root.RequestFuture(actor.NewPID(p.address, busActorName),
				&Ping{Version: WireVersion_WIRE_VERSION_1, From: m.id}, timeout)
		}
		// The clock of the second sign starts when this member joined: a
		// member is unknown to its peers until their provider reports it.
		last := time.Unix(0, m.joinedAt.Load())
		answered := false
		for i, f := range futures {
			p := peers[i]
			// A peer that does not answer holds the round up to timeout; a
			// stop does not wait for it.
			res, err := m.result(f, m.stopping)
			if errors.Is(err, errStopping) {
				for _, f := range futures[i+1:] {
					m.system.Root.Stop(f.PID())
				}
				return
			}
			if err == nil {
				if pr, ok := res.(*PingResponse); ok {
					answered = true
					p.knowsUs.Store(pr.KnowsYou)
					if pr.KnowsYou {
						p.lastAck.Store(time.Now().UnixNano())
					}
					if pr.BlockedYou {
						r.evicted(m, fmt.Sprintf("peer %s (%s) has blocked this member", p.id, p.address))
					}
				}
			}
			if t := time.Unix(0, p.lastAck.Load()); t.After(last) {
				last = t
			}
			// A peer that appeared since has had no time to list this
			// member yet: its clock starts when it appeared.
			if p.since.After(last) {
				last = p.since
			}
		}
		if m.joinedAt.Load() != 0 && answered && time.Since(last) > s.rejoinAfter {
			r.evicted(m, fmt.Sprintf("no peer has counted this member as a member for %s", time.Since(last).Round(time.Millisecond)))
		}
		if r.b.Provider == ProviderAutomanaged && !healthBusy && time.Since(lastHealth) >= s.refresh {
			lastHealth, healthBusy = time.Now(), true
			healthWG.Add(1)
			go func() {
				defer healthWG.Done()
				health <- r.pollHealth(m)
			}()
		}
	}
}

// healthNode is what an automanaged member's /_health endpoint says.
type healthNode struct {
	ID          string `json:"id"`
	Address     string `json:"address"`
	Port        int    `json:"port"`
	ClusterName string `json:"cluster_name"`
}

func (r *run) pollHealth(m *member) []healthNode {
	ctx, cancel := context.WithTimeout(context.Background(), max(r.b.cfg.refresh, time.Second))
	defer cancel()
	go func() {
		select {
		case <-m.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	var mu sync.Mutex
	var out []healthNode
	var wg sync.WaitGroup
	for _, h := range r.b.Automanaged.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h+"/_health", nil)
			if err != nil {
				return
			}
			resp, err := healthClient.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var n healthNode
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&n) != nil {
				return
			}
			mu.Lock()
			out = append(out, n)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

var healthClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func (r *run) checkLiveBlocked(m *member, nodes []healthNode, since map[string]time.Time) {
	rem := m.cl.Remote
	if rem == nil {
		return
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		if n.ClusterName != r.b.ClusterName || sameMember(n.ID, m.id) || !rem.BlockList().IsBlocked(n.ID) {
			continue
		}
		seen[n.ID] = true
		first, ok := since[n.ID]
		if !ok {
			since[n.ID] = time.Now()
			continue
		}
		if time.Since(first) > 2*r.b.cfg.rejoinAfter && n.ID < m.id {
			r.evicted(m, fmt.Sprintf("member %s (%s:%d) is alive but blocked here: the cluster was split", n.ID, n.Address, n.Port))
		}
	}
	for id := range since {
		if !seen[id] {
			delete(since, id)
		}
	}
}
