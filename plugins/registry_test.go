package plugins_test

import (
	"context"
	"testing"

	"github.com/threatbus/threatbus/plugins"
)

type nopApp struct{}

func (nopApp) SampleConfig() string                         { return "" }
func (nopApp) Init() error                                  { return nil }
func (nopApp) Run(ctx context.Context, _ plugins.Bus) error { <-ctx.Done(); return nil }

// Registered from init, as the registry asks, so that the test can run more
// than once in a process (-count=N).
func init() {
	plugins.AddApp("regtest-b", func() plugins.App { return nopApp{} })
	plugins.AddApp("regtest-a", func() plugins.App { return nopApp{} })
}

func TestRegistry(t *testing.T) {
	r, ok := plugins.Lookup(plugins.KindApp, "regtest-a")
	if !ok || r.Kind != plugins.KindApp || r.Name != "regtest-a" {
		t.Fatalf("lookup: %+v %v", r, ok)
	}
	if _, ok := r.New().(plugins.App); !ok {
		t.Fatal("New does not return the app")
	}
	if _, ok := plugins.Lookup(plugins.KindBackbone, "regtest-a"); ok {
		t.Fatal("an app found as a backbone")
	}
	names := plugins.Names(plugins.KindApp)
	if len(names) != 2 || names[0] != "regtest-a" || names[1] != "regtest-b" {
		t.Fatalf("names not sorted: %v", names)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("registering a name twice did not panic")
		}
	}()
	plugins.AddApp("regtest-a", func() plugins.App { return nopApp{} })
}
