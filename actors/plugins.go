package actors

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/threatbus/threatbus/plugins"
)

// Plugin states, as status and /readyz report them.
const (
	stateStarting   = "starting"
	stateRunning    = "running"
	stateRestarting = "restarting"
	stateStopping   = "stopping"
	stateFailed     = "failed" // given up on: stopped by supervision
)

// pluginTable is the lifecycle record of every plugin instance, written by
// the plugin's actor and its supervisor, read by status and health checks.
type pluginTable struct {
	mu sync.Mutex
	m  map[string]*pluginRecord
}

type pluginRecord struct {
	kind     plugins.Kind
	plugin   plugins.Plugin
	state    string
	since    time.Time
	restarts uint64
	lastErr  string
}

func newPluginTable() *pluginTable { return &pluginTable{m: map[string]*pluginRecord{}} }

func (t *pluginTable) add(kind plugins.Kind, name string, p plugins.Plugin) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[name] = &pluginRecord{kind: kind, plugin: p, state: stateStarting, since: time.Now()}
}

func (t *pluginTable) set(name, state string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[name]
	if !ok || r.state == stateFailed {
		return
	}
	if state == stateRestarting {
		r.restarts++
	}
	r.state, r.since = state, time.Now()
}

func (t *pluginTable) failed(name, why string, reason any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.m[name]; ok {
		r.state, r.since = stateFailed, time.Now()
		r.lastErr = fmt.Sprintf("%s: %v", why, reason)
	}
}

func (t *pluginTable) noteError(name string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.m[name]; ok {
		r.lastErr = err.Error()
	}
}

// PluginStatus is the state of one plugin instance.
type PluginStatus struct {
	Name     string    `json:"name"`
	Kind     string    `json:"kind"`
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
	Restarts uint64    `json:"restarts"`
	// LastError is the last failure, if any.
	LastError string `json:"last_error,omitempty"`
	// Ready: running and, for plugins with an external connection, connected.
	Ready bool `json:"ready"`
	// NotReady says why Ready is false.
	NotReady string `json:"not_ready,omitempty"`
	// Details is the plugin's own report (plugins.Reporter), if it has one.
	Details any `json:"details,omitempty"`
	// Metrics are the plugin's own metrics; /metrics exports them.
	Metrics []plugins.Metric `json:"-"`
}

func (t *pluginTable) status() []PluginStatus {
	t.mu.Lock()
	out := make([]PluginStatus, 0, len(t.m))
	checkers := make([]plugins.Checker, 0, len(t.m))
	reporters := make([]plugins.Reporter, 0, len(t.m))
	for name, r := range t.m {
		out = append(out, PluginStatus{Name: name, Kind: string(r.kind), State: r.state, Since: r.since, Restarts: r.restarts, LastError: r.lastErr})
		c, _ := r.plugin.(plugins.Checker)
		checkers = append(checkers, c)
		rep, _ := r.plugin.(plugins.Reporter)
		reporters = append(reporters, rep)
	}
	t.mu.Unlock()
	for i := range out { // outside the lock: Ready and Report may take a moment
		if reporters[i] != nil {
			rep := reporters[i].Report()
			out[i].Details, out[i].Metrics = rep.Details, rep.Metrics
		}
		switch {
		case out[i].State != stateRunning:
			out[i].NotReady = "plugin is " + out[i].State
		case checkers[i] != nil:
			if err := checkers[i].Ready(); err != nil {
				out[i].NotReady = err.Error()
			}
		}
		out[i].Ready = out[i].NotReady == ""
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind > out[j].Kind // backbones first
		}
		return out[i].Name < out[j].Name
	})
	return out
}
