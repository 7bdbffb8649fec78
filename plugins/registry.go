package plugins

import (
	"fmt"
	"sort"
	"sync"
)

// Kind is the kind of a plugin, as it appears in the config file's table
// names ([apps.<name>], [backbones.<name>]).
type Kind string

// The two kinds of plugin.
const (
	KindApp      Kind = "apps"
	KindBackbone Kind = "backbones"
)

// Registration is one compiled-in plugin.
type Registration struct {
	Kind Kind
	Name string
	// New returns a fresh, unconfigured plugin value with its defaults set.
	New func() Plugin
}

var (
	mu       sync.RWMutex
	registry = map[Kind]map[string]Registration{}
)

// AddApp registers an app plugin. Call it from the plugin package's init().
func AddApp(name string, newApp func() App) {
	add(Registration{Kind: KindApp, Name: name, New: func() Plugin { return newApp() }})
}

// AddBackbone registers a backbone plugin. Call it from init().
func AddBackbone(name string, newBackbone func() Backbone) {
	add(Registration{Kind: KindBackbone, Name: name, New: func() Plugin { return newBackbone() }})
}

func add(r Registration) {
	mu.Lock()
	defer mu.Unlock()
	if registry[r.Kind] == nil {
		registry[r.Kind] = map[string]Registration{}
	}
	if _, dup := registry[r.Kind][r.Name]; dup {
		panic(fmt.Sprintf("plugins: %s plugin %q registered twice", r.Kind, r.Name))
	}
	registry[r.Kind][r.Name] = r
}

// Lookup returns the registration of a plugin.
func Lookup(kind Kind, name string) (Registration, bool) {
	mu.RLock()
	defer mu.RUnlock()
	r, ok := registry[kind][name]
	return r, ok
}

// List returns the registered plugins of a kind, sorted by name.
func List(kind Kind) []Registration {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Registration, 0, len(registry[kind]))
	for _, r := range registry[kind] {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names returns the names of the registered plugins of a kind, sorted.
func Names(kind Kind) []string {
	regs := List(kind)
	names := make([]string, len(regs))
	for i, r := range regs {
		names[i] = r.Name
	}
	return names
}
