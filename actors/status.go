package actors

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/threatbus/threatbus/internal/buildinfo"
)

// Status is a point-in-time report of a running bus: what /api/v1/status
// serves and /metrics is derived from.
type Status struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Ready: every plugin running and connected.
	Ready         bool                 `json:"ready"`
	Plugins       []PluginStatus       `json:"plugins"`
	Subscriptions []SubscriptionStatus `json:"subscriptions"`
	// Traffic counts, per app and topic, messages the app published and
	// messages its subscriptions delivered.
	Traffic []Traffic `json:"traffic"`
	// Routed counts deliveries to subscribers, by topic.
	Routed map[string]uint64 `json:"routed"`
	// Drops counts accepted messages that were not delivered, by reason.
	Drops map[string]uint64 `json:"drops"`
	// Rejected counts bad input and unexpected messages, by cause.
	Rejected map[string]uint64 `json:"rejected"`
	// Deduplicated counts copies removed on purpose, by where: "router"
	// (redeliveries of a transport), "snapshot" (answers other buses gave
	// too).
	Deduplicated map[string]uint64 `json:"deduplicated"`
	// Restarts counts supervisor decisions, by actor and directive.
	Restarts          []Restarts `json:"restarts"`
	SnapshotRequests  uint64     `json:"snapshot_requests"`
	SnapshotsInFlight int        `json:"snapshots_in_flight"`
}

// Traffic is one app's message counts on one topic.
type Traffic struct {
	App       string `json:"app"`
	Topic     string `json:"topic"`
	Published uint64 `json:"published"`
	Delivered uint64 `json:"delivered"`
}

// Restarts counts one supervisor directive for one actor.
type Restarts struct {
	Actor     string `json:"actor"`
	Directive string `json:"directive"`
	Count     uint64 `json:"count"`
}

// Status gathers the bus's status; the parts held by actors are asked for
// within ctx's deadline.
func (d *Daemon) Status(ctx context.Context) (Status, error) {
	st := Status{
		Version:          buildinfo.String(),
		Started:          d.started,
		Plugins:          d.rt.plugins.status(),
		Routed:           map[string]uint64{},
		Drops:            d.rt.drops.snapshot(),
		Rejected:         d.rt.faults.snapshot(),
		Deduplicated:     d.rt.dedups.snapshot(),
		SnapshotRequests: d.rt.snapshotRequests.Load(),
	}
	st.Ready = true
	for _, p := range st.Plugins {
		st.Ready = st.Ready && p.Ready
	}
	for i, t := range topicNames {
		st.Routed[t] = d.rt.routed[i].Load()
	}
	for _, h := range d.rt.handles {
		for i, t := range topicNames {
			st.Traffic = append(st.Traffic, Traffic{App: h.name, Topic: t, Published: h.published[i].Load(), Delivered: h.delivered[i].Load()})
		}
	}
	for k, n := range d.restarts.snapshot() {
		actor, directive, _ := strings.Cut(k, "|")
		st.Restarts = append(st.Restarts, Restarts{Actor: actor, Directive: directive, Count: n})
	}
	sort.Slice(st.Restarts, func(i, j int) bool {
		if st.Restarts[i].Actor != st.Restarts[j].Actor {
			return st.Restarts[i].Actor < st.Restarts[j].Actor
		}
		return st.Restarts[i].Directive < st.Restarts[j].Directive
	})
	var errs []error
	res, err := d.rt.root.RequestFuture(d.rt.apps, &listSubscriptions{}, requestTimeout(ctx)).Result()
	if err != nil {
		errs = append(errs, err)
	} else {
		st.Subscriptions = res.([]SubscriptionStatus)
		sort.Slice(st.Subscriptions, func(i, j int) bool { return st.Subscriptions[i].ID < st.Subscriptions[j].ID })
	}
	if n, err := d.Snapshots(ctx); err != nil {
		errs = append(errs, err)
	} else {
		st.SnapshotsInFlight = n
	}
	return st, errors.Join(errs...)
}
