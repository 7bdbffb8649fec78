package admin

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/threatbus/threatbus/actors"
	"github.com/threatbus/threatbus/plugins"
)

// collector turns one actors.Status per scrape into metrics, so counters
// are kept once (by the bus) and cannot drift from the status report.
type collector struct {
	d *actors.Daemon
}

func newCollector(d *actors.Daemon) *collector { return &collector{d: d} }

var (
	descBuild      = prometheus.NewDesc("threatbus_build_info", "Build information; the value is 1.", []string{"version", "goversion"}, nil)
	descPublished  = prometheus.NewDesc("threatbus_messages_published_total", "Messages an app put on the bus.", []string{"app", "topic"}, nil)
	descDelivered  = prometheus.NewDesc("threatbus_messages_delivered_total", "Messages an app's subscriptions handed to their peers.", []string{"app", "topic"}, nil)
	descRouted     = prometheus.NewDesc("threatbus_router_deliveries_total", "Deliveries the router made to subscribers.", []string{"topic"}, nil)
	descDropped    = prometheus.NewDesc("threatbus_messages_dropped_total", "Accepted messages that were not delivered.", []string{"reason"}, nil)
	descRejected   = prometheus.NewDesc("threatbus_messages_rejected_total", "Bad input and unexpected messages, ignored.", []string{"cause"}, nil)
	descDedup      = prometheus.NewDesc("threatbus_messages_deduplicated_total", "Copies removed on purpose: transport redeliveries (router), other buses' snapshot answers (snapshot).", []string{"where"}, nil)
	descSubs       = prometheus.NewDesc("threatbus_subscriptions", "Live subscriptions.", []string{"app"}, nil)
	descOutbox     = prometheus.NewDesc("threatbus_subscription_outbox_messages", "Messages waiting in subscriptions' outboxes.", []string{"app"}, nil)
	descRestarts   = prometheus.NewDesc("threatbus_actor_restarts_total", "Supervisor decisions on failed actors (restart, resume, stop).", []string{"actor", "directive"}, nil)
	descSnapReqs   = prometheus.NewDesc("threatbus_snapshot_requests_total", "Snapshot requests this bus started.", nil, nil)
	descSnapFlight = prometheus.NewDesc("threatbus_snapshots_in_flight", "Snapshots accepting answers.", nil, nil)
	descUp         = prometheus.NewDesc("threatbus_plugin_up", "1 when the plugin runs and its external connection is up.", []string{"plugin", "kind", "state"}, nil)
	descBackbone   = prometheus.NewDesc("threatbus_backbone_connected", "1 when the backbone is connected.", []string{"backbone"}, nil)
	descScrapeErr  = prometheus.NewDesc("threatbus_status_incomplete", "1 when actors did not report their part of this scrape in time.", nil, nil)
)

// Describe describes nothing: the collector is unchecked, because the
// plugins' own metrics (plugins.Reporter) are known only when collected. The
// registry still checks at every scrape that samples of one name agree.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.d.Status(ctx)
	failed := 0.0
	if err != nil {
		failed = 1
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descScrapeErr, failed)
	gauge(descBuild, 1, st.Version, runtime.Version())
	for _, t := range st.Traffic {
		counter(descPublished, t.Published, t.App, t.Topic)
		counter(descDelivered, t.Delivered, t.App, t.Topic)
	}
	for topic, n := range st.Routed {
		counter(descRouted, n, topic)
	}
	for reason, n := range st.Drops {
		counter(descDropped, n, reason)
	}
	for cause, n := range st.Rejected {
		counter(descRejected, n, cause)
	}
	for where, n := range st.Deduplicated {
		counter(descDedup, n, where)
	}
	subs, queued := map[string]float64{}, map[string]float64{}
	for _, p := range st.Plugins {
		if p.Kind == "apps" {
			subs[p.Name], queued[p.Name] = 0, 0
		}
	}
	for _, s := range st.Subscriptions {
		subs[s.App]++
		queued[s.App] += float64(s.Queued)
	}
	for app, n := range subs {
		gauge(descSubs, n, app)
		gauge(descOutbox, queued[app], app)
	}
	for _, r := range st.Restarts {
		counter(descRestarts, r.Count, r.Actor, r.Directive)
	}
	counter(descSnapReqs, st.SnapshotRequests)
	gauge(descSnapFlight, float64(st.SnapshotsInFlight))
	seen := map[string]string{}
	for _, p := range st.Plugins {
		up := 0.0
		if p.Ready {
			up = 1
		}
		gauge(descUp, up, p.Name, p.Kind, p.State)
		if p.Kind == "backbones" {
			gauge(descBackbone, up, p.Name)
		}
		for _, m := range p.Metrics {
			if pm, ok := pluginMetric(p.Name, m, seen); ok {
				ch <- pm
			}
		}
	}
}

// pluginMetric turns one sample a plugin reported into a metric; ok is false
// for a sample Prometheus would refuse (a bad name or label), which is left
// out rather than failing the whole scrape. That includes a second sample
// with the same labels, and a sample whose type, help or label names differ
// from the first of its name: seen remembers the scrape's samples for that.
func pluginMetric(plugin string, m plugins.Metric, seen map[string]string) (prometheus.Metric, bool) {
	names := make([]string, 0, len(m.Labels)+1)
	for k := range m.Labels {
		names = append(names, k)
	}
	sort.Strings(names)
	values := make([]string, 0, len(names)+1)
	for _, k := range names {
		values = append(values, m.Labels[k])
	}
	shape := fmt.Sprintf("%t\x00%s\x00%q", m.Counter, m.Help, names)
	sample := fmt.Sprintf("%s\x00%s\x00%q", m.Name, plugin, values)
	if s, ok := seen["name\x00"+m.Name]; ok && s != shape {
		return nil, false
	}
	if _, dup := seen[sample]; dup {
		return nil, false
	}
	seen["name\x00"+m.Name], seen[sample] = shape, ""
	names, values = append([]string{"plugin"}, names...), append([]string{plugin}, values...)
	typ := prometheus.GaugeValue
	if m.Counter {
		typ = prometheus.CounterValue
	}
	pm, err := prometheus.NewConstMetric(prometheus.NewDesc("threatbus_"+m.Name, m.Help, names, nil), typ, m.Value, values...)
	return pm, err == nil
}
