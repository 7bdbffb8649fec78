package admin_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threatbus/threatbus/actors"
	"github.com/threatbus/threatbus/internal/admin"
	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/inmem"
	"github.com/threatbus/threatbus/tests/bustest"
)

// crashyApp is a test app whose Run panics on command.
type crashyApp struct {
	panics  chan struct{}
	running atomic.Int32 // incarnations of Run so far
}

func (*crashyApp) SampleConfig() string { return "" }
func (*crashyApp) Init() error          { return nil }
func (a *crashyApp) Run(ctx context.Context, _ plugins.Bus) error {
	a.running.Add(1)
	select {
	case <-a.panics:
		panic("commanded")
	case <-ctx.Done():
		return nil
	}
}

// configErrApp fails at start-up with a configuration error.
type configErrApp struct{ runs atomic.Int32 }

func (*configErrApp) SampleConfig() string { return "" }
func (*configErrApp) Init() error          { return nil }
func (a *configErrApp) Run(context.Context, plugins.Bus) error {
	a.runs.Add(1)
	return &plugins.ConfigError{Err: errors.New("credentials refused by the server")}
}

type harness struct {
	*bustest.Bus
	url string
}

func start(t *testing.T, chaos bool, apps []config.Instance, configure func(*config.Config)) *harness {
	t.Helper()
	b := bustest.Start(t, &inmem.Backbone{}, bustest.Options{Apps: apps, Configure: func(c *config.Config) {
		c.Supervision.BackoffMin = config.Duration(time.Millisecond)
		c.Supervision.BackoffMax = config.Duration(5 * time.Millisecond)
		c.Supervision.MaxRestarts = 1000
		c.Chaos.Enabled = chaos
		if configure != nil {
			configure(c)
		}
	}})
	srv, err := admin.Start(config.Admin{Listen: "127.0.0.1:0", Pprof: b.Config.Admin.Pprof}, b.Daemon, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return &harness{Bus: b, url: "http://" + srv.Addr()}
}

func (h *harness) do(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, h.url+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metrics scrapes /metrics into "name{labels}" → value.
func (h *harness) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	code, body := h.do(t, "GET", "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndex(line, " ")
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestCrashesUnderLoadLoseNothing: 100 crashes each of an app, the backbone
// and the router while thousands of messages a second flow to several
// subscribers: every subscription stays in force, every message is
// delivered, and the restarts show on the event stream and in /metrics.
func TestCrashesUnderLoadLoseNothing(t *testing.T) {
	app := &crashyApp{panics: make(chan struct{})}
	h := start(t, true, []config.Instance{{Kind: plugins.KindApp, Name: "crashy", Plugin: app}}, nil)
	const subs = 4
	recs := make([]*bustest.Recorder, subs)
	for i := range recs {
		recs[i] = bustest.NewRecorder(fmt.Sprintf("sub%d", i))
		h.Subscribe(t, recs[i], "stix2/")
	}

	stop := make(chan struct{})
	var published atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // ~5k messages/s
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for i := 0; i < 5; i++ {
				h.Publish(t, bustest.Indicator(t, seq))
				seq++
				published.Add(1)
			}
		}
	}()

	const crashes = 100
	for i := 0; i < crashes; i++ {
		// The app panics in its own code; the backbone and the router are
		// crashed through the admin endpoint.
		select {
		case app.panics <- struct{}{}:
		case <-time.After(bustest.Timeout):
			t.Fatalf("crashy app not running after %d crashes", i)
		}
		for _, target := range []string{"test-backbone", "router"} {
			if code, body := h.do(t, "POST", "/debug/crash/"+target); code != http.StatusAccepted {
				t.Fatalf("crash %s: %d %s", target, code, body)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	bustest.Eventually(t, "the app's 100th restart", func() bool { return app.running.Load() == crashes+1 })
	close(stop)
	wg.Wait()
	n := int(published.Load())
	for _, r := range recs {
		r.WaitLen(t, n)
	}
	ctx := context.Background()
	if got, err := h.Daemon.Subscribers(ctx); err != nil || got != subs {
		t.Fatalf("subscribers after the crashes: %d (%v), want %d", got, err, subs)
	}
	for _, r := range recs {
		r.Quiet(t, n, 50*time.Millisecond)
	}
	if d := h.Daemon.Stats().Drops; len(d) != 0 {
		t.Fatalf("drops: %v", d)
	}

	// Counted on the event stream …
	ev := h.Daemon.Stats().Restarts
	want := map[string]uint64{"apps/crashy|restart": crashes, "router/backbone|restart": crashes, "router|resume": crashes}
	bustest.Eventually(t, "restarts on the event stream", func() bool {
		ev = h.Daemon.Stats().Restarts
		for k, v := range want {
			if ev[k] != v {
				return false
			}
		}
		return true
	})
	// … and in /metrics.
	m := h.metrics(t)
	for k, v := range map[string]float64{
		`threatbus_actor_restarts_total{actor="apps/crashy",directive="restart"}`:     crashes,
		`threatbus_actor_restarts_total{actor="router/backbone",directive="restart"}`: crashes,
		`threatbus_actor_restarts_total{actor="router",directive="resume"}`:           crashes,
		`threatbus_subscriptions{app="probe"}`:                                        subs,
		`threatbus_messages_published_total{app="probe",topic="stix2/indicator"}`:     float64(n),
		`threatbus_messages_delivered_total{app="probe",topic="stix2/indicator"}`:     float64(subs * n),
	} {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	t.Logf("%d messages to %d subscribers through %d crashes of each kind", n, subs, crashes)
}

// TestChaosProbabilityAccountsForEveryMessage: random crashes of the router
// lose the message being routed, and each loss is counted.
func TestChaosProbabilityAccountsForEveryMessage(t *testing.T) {
	h := start(t, true, nil, func(c *config.Config) {
		c.Chaos.Targets = []string{"router"}
		c.Chaos.Probability = 0.02
	})
	rec := bustest.NewRecorder("sub")
	// The router may crash on the Subscribe itself (2%): the call fails and
	// leaves nothing behind, and a second one goes through.
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := h.Bus.Bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{messages.TopicIndicator}, Sink: rec.Sink})
		cancel()
		if err == nil {
			break
		}
		if attempt == 5 {
			t.Fatalf("subscribe: %v", err)
		}
	}
	const n = 3000
	for i := 0; i < n; i++ {
		h.Publish(t, bustest.Indicator(t, i))
	}
	var crashed uint64
	bustest.Eventually(t, "every message delivered or counted", func() bool {
		crashed = h.Daemon.Stats().Drops["actor_crash"]
		return uint64(rec.Len())+crashed == n
	})
	if crashed == 0 {
		t.Fatal("no chaos crash in 3000 messages at p=0.02")
	}
	if m := h.metrics(t); m[`threatbus_messages_dropped_total{reason="actor_crash"}`] != float64(crashed) {
		t.Fatalf("metrics disagree with %d crash drops", crashed)
	}
}

func TestChaosInterval(t *testing.T) {
	h := start(t, true, nil, func(c *config.Config) {
		c.Chaos.Targets = []string{"test-backbone"}
		c.Chaos.Interval = config.Duration(10 * time.Millisecond)
	})
	bustest.Eventually(t, "interval crashes", func() bool { return h.Daemon.Stats().Restarts["router/backbone|restart"] >= 3 })
}

// TestConfigErrorStopsPluginAtOnce: an app failing with a configuration
// error is not restarted, shows in /readyz and the status, and the rest of
// the bus serves.
func TestConfigErrorStopsPluginAtOnce(t *testing.T) {
	bad := &configErrApp{}
	h := start(t, false, []config.Instance{{Kind: plugins.KindApp, Name: "misconfigured", Plugin: bad}}, nil)
	bustest.Eventually(t, "the app to be stopped", func() bool {
		return h.Daemon.Stats().Restarts["apps/misconfigured|stop"] == 1
	})
	code, body := h.do(t, "GET", "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "app misconfigured: plugin is failed") || !strings.Contains(body, "credentials refused") {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	code, body = h.do(t, "GET", "/api/v1/status")
	var st actors.Status
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
		t.Fatalf("status: %d %v", code, err)
	}
	found := false
	for _, p := range st.Plugins {
		if p.Name == "misconfigured" {
			found = p.State == "failed" && p.Restarts == 0 && !p.Ready
		}
	}
	if !found || st.Ready {
		t.Fatalf("status does not report the failed plugin: %s", body)
	}
	if bad.runs.Load() != 1 {
		t.Fatalf("Run called %d times, want once", bad.runs.Load())
	}
	rec := bustest.NewRecorder("sub")
	h.Subscribe(t, rec, "stix2/")
	h.Publish(t, bustest.Indicator(t, 1))
	rec.WaitLen(t, 1)
	if code, _ := h.do(t, "GET", "/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
}

func TestReadyAndHealthy(t *testing.T) {
	h := start(t, false, nil, nil)
	bustest.Eventually(t, "ready", func() bool { code, _ := h.do(t, "GET", "/readyz"); return code == 200 })
	if code, body := h.do(t, "GET", "/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	m := h.metrics(t)
	if m[`threatbus_backbone_connected{backbone="test-backbone"}`] != 1 || m[`threatbus_plugin_up{kind="apps",plugin="probe",state="running"}`] != 1 {
		t.Fatalf("plugin metrics: %v", m)
	}
	for k := range m {
		if strings.HasPrefix(k, "threatbus_build_info{") {
			return
		}
	}
	t.Fatal("no threatbus_build_info")
}

// TestCrashRefusedUnlessEnabled: the admin endpoint refuses when fault
// injection is off, and names nothing it does not know.
func TestCrashRefusedUnlessEnabled(t *testing.T) {
	h := start(t, false, nil, nil)
	if code, body := h.do(t, "POST", "/debug/crash/router"); code != http.StatusForbidden || !strings.Contains(body, "enabled = true") {
		t.Fatalf("disabled: %d %s", code, body)
	}
	if code, _ := h.do(t, "GET", "/debug/crash/router"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET crash: %d", code)
	}
	if r := h.Daemon.Stats().Restarts; len(r) != 0 {
		t.Fatalf("something crashed: %v", r)
	}
	on := start(t, true, nil, nil)
	if code, _ := on.do(t, "POST", "/debug/crash/nosuch"); code != http.StatusNotFound {
		t.Fatalf("unknown target: %d", code)
	}
}

// TestMetricsMove: counters follow traffic.
func TestMetricsMove(t *testing.T) {
	h := start(t, false, nil, nil)
	rec := bustest.NewRecorder("sub")
	h.Subscribe(t, rec, "stix2/")
	before := h.metrics(t)
	for i := 0; i < 7; i++ {
		h.Publish(t, bustest.Indicator(t, i))
	}
	for i := 0; i < 3; i++ {
		h.Publish(t, bustest.Sighting(t, i))
	}
	_ = h.Bus.Bus.Publish(context.Background(), []byte(`{"type":"identity"}`)) // refused at the edge, not counted as published
	rec.WaitLen(t, 10)
	h.Publish(t, []byte(`{"type":"snapshotrequest","snapshot_type":9}`)) // routed, then rejected by the bus
	var after map[string]float64
	bustest.Eventually(t, "the rejected request to be counted", func() bool {
		after = h.metrics(t)
		return after[`threatbus_messages_rejected_total{cause="snapshot:invalid_request"}`] == 1
	})
	diff := func(k string) float64 { return after[k] - before[k] }
	for k, v := range map[string]float64{
		`threatbus_messages_published_total{app="probe",topic="stix2/indicator"}`: 7,
		`threatbus_messages_published_total{app="probe",topic="stix2/sighting"}`:  3,
		`threatbus_messages_delivered_total{app="probe",topic="stix2/indicator"}`: 7,
		`threatbus_router_deliveries_total{topic="stix2/sighting"}`:               3,
	} {
		if diff(k) != v {
			t.Errorf("%s moved by %v, want %v", k, diff(k), v)
		}
	}
	if after[`threatbus_subscriptions{app="probe"}`] != 1 {
		t.Errorf("subscriptions gauge: %v", after[`threatbus_subscriptions{app="probe"}`])
	}
}

// reportingApp reports state of its own (plugins.Reporter), including a
// sample Prometheus would refuse.
type reportingApp struct{ crashyApp }

func (*reportingApp) Report() plugins.Report {
	return plugins.Report{
		Details: map[string]any{"peers": []string{"a", "b"}},
		Metrics: []plugins.Metric{
			{Name: "test_peer_forwarded_total", Help: "Forwarded, by peer.", Counter: true, Labels: map[string]string{"peer": "a"}, Value: 3},
			{Name: "test_peer_forwarded_total", Help: "Forwarded, by peer.", Counter: true, Labels: map[string]string{"peer": "b"}, Value: 5},
			{Name: "test_queue_messages", Help: "Queued.", Value: 2},
			{Name: "bad name", Help: "Refused by Prometheus: left out, not fatal.", Value: 1},
			// Would fail the whole scrape; left out, the first one wins.
			{Name: "test_queue_messages", Help: "Queued.", Value: 99},
			{Name: "test_queue_messages", Help: "Queued.", Labels: map[string]string{"extra": "x"}, Value: 7},
			{Name: "test_peer_forwarded_total", Help: "Forwarded, by peer.", Labels: map[string]string{"peer": "c"}, Value: 1},
		},
	}
}

// TestPluginReports: a plugin's own report shows under it in the status,
// and its metrics on /metrics with the plugin label, typed as declared.
func TestPluginReports(t *testing.T) {
	h := start(t, false, []config.Instance{{Kind: plugins.KindApp, Name: "reporter", Plugin: &reportingApp{}}}, nil)
	m := h.metrics(t)
	for k, v := range map[string]float64{
		`threatbus_test_peer_forwarded_total{peer="a",plugin="reporter"}`: 3,
		`threatbus_test_peer_forwarded_total{peer="b",plugin="reporter"}`: 5,
		`threatbus_test_queue_messages{plugin="reporter"}`:                2,
	} {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %t), want %v", k, got, ok, v)
		}
	}
	_, body := h.do(t, "GET", "/metrics")
	if !strings.Contains(body, "# TYPE threatbus_test_peer_forwarded_total counter") || !strings.Contains(body, "# TYPE threatbus_test_queue_messages gauge") {
		t.Errorf("plugin metrics typed wrong:\n%s", body)
	}
	code, status := h.do(t, "GET", "/api/v1/status")
	if code != 200 {
		t.Fatalf("status: %d %s", code, status)
	}
	var st struct {
		Plugins []struct {
			Name    string          `json:"name"`
			Details json.RawMessage `json:"details"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(status), &st); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range st.Plugins {
		if p.Name == "reporter" {
			found = true
			var compact bytes.Buffer
			if err := json.Compact(&compact, p.Details); err != nil || compact.String() != `{"peers":["a","b"]}` {
				t.Errorf("details %s", p.Details)
			}
		}
	}
	if !found {
		t.Fatalf("no reporter in %s", status)
	}
}

// TestPprofOnlyWhenEnabled: the profiler is served only with [admin] pprof.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	off := start(t, false, nil, nil)
	if code, _ := off.do(t, "GET", "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("pprof off: /debug/pprof/ answered %d", code)
	}
	on := start(t, false, nil, func(c *config.Config) { c.Admin.Pprof = true })
	if code, body := on.do(t, "GET", "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof on: /debug/pprof/ answered %d", code)
	}
	if code, body := on.do(t, "GET", "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Fatalf("pprof on: goroutine profile answered %d", code)
	}
}
