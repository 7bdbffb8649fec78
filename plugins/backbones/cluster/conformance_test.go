package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/cluster"
	"github.com/threatbus/threatbus/tests/backbonetest"
	"github.com/threatbus/threatbus/tests/proctest"
)

// parseBackbone decodes a config document through the real loader and
// returns its cluster backbone.
func parseBackbone(t *testing.T, doc string) *cluster.Backbone {
	t.Helper()
	doc = strings.Replace(doc, "[apps.lines]\n", "", 1)
	cfg, err := config.Parse("test.toml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := cfg.Backbone.Plugin.(*cluster.Backbone)
	if !ok {
		t.Fatalf("backbone is %T", cfg.Backbone.Plugin)
	}
	w := io.Discard
	if os.Getenv("THREATBUS_TEST_LOG") != "" {
		w = os.Stderr
	}
	b.SetLogger(slog.New(slog.NewTextHandler(w, nil)))
	return b
}

// formedBackbone is a cluster backbone whose Start returns once the whole
// cluster counts it as a member, so that every scenario runs with forwarding
// to every peer in force. It counts what it publishes.
type formedBackbone struct {
	*cluster.Backbone
	t         *testing.T
	members   int
	published *atomic.Int64
}

func (f *formedBackbone) Start(ctx context.Context, deliver func(*messages.Envelope)) error {
	if f.Ready() == nil {
		f.t.Errorf("Ready before Start")
	}
	if err := f.Backbone.Start(ctx, deliver); err != nil {
		return err
	}
	defer func() {
		if err := f.Ready(); err != nil {
			f.t.Errorf("not ready once the cluster formed: %v", err)
		}
	}()
	deadline := time.Now().Add(40 * time.Second)
	for !formed(f.Status(), f.members) {
		if time.Now().After(deadline) {
			f.t.Errorf("the in-process member did not join the cluster: %+v", f.Status())
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func (f *formedBackbone) Publish(ctx context.Context, env *messages.Envelope) error {
	f.published.Add(1)
	return f.Backbone.Publish(ctx, env)
}

// scenarios are the conformance suite's scenarios, by name.
var scenarios = []struct {
	name string
	fn   func(*testing.T, backbonetest.Features)
}{
	{"PublishSubscribe", backbonetest.PublishSubscribe},
	{"FanOut", backbonetest.FanOut},
	{"PrefixAndIsolation", backbonetest.PrefixAndIsolation},
	{"MultiTopicSubscriber", backbonetest.MultiTopicSubscriber},
	{"Unsubscribe", backbonetest.Unsubscribe},
	{"PerPublisherOrder", backbonetest.PerPublisherOrder},
	{"ConcurrentPublishers", backbonetest.ConcurrentPublishers},
	{"DeadSubscriber", backbonetest.DeadSubscriber},
	{"CloseWhileBusy", backbonetest.CloseWhileBusy},
}

// Environment of a scenario process (see TestConformance).
const (
	envScenario = "THREATBUS_CLUSTER_SCENARIO"
	envConf     = "THREATBUS_CLUSTER_SCENARIO_CONF"
)

// TestConformance runs the backbone conformance suite on a cluster of three
// members. The member under test runs in a process of this test binary
// (so under -race) with the real actor tree; the two others run as
// internal/testbus processes. Each scenario gets a fresh member under test,
// in a process of its own: protoactor's remote sets gRPC's global logger on
// start, which races with the gRPC goroutines a previous remote left in the
// process (see README.md). A fresh member has a new id on the same ports, so
// the suite also exercises leaving and joining nine times. The other members
// must receive everything the scenarios published, once.
//
// Run with the scenario variables set, this test is that scenario process.
func TestConformance(t *testing.T) {
	if name := os.Getenv(envScenario); name != "" {
		runScenario(t, name)
		return
	}
	t.Parallel()
	nodes := loopbackNodes(t, 3)
	name := fmt.Sprintf("conformance-%d", time.Now().UnixNano())
	c1 := startProc(t, "member-1", automanagedConf(name, nodes[1], nodes), nil)
	c2 := startProc(t, "member-2", automanagedConf(name, nodes[2], nodes), nil)
	conf := filepath.Join(t.TempDir(), "member-0.toml")
	if err := os.WriteFile(conf, []byte(automanagedConf(name, nodes[0], nodes)), 0o600); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestConformance$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), envScenario+"="+sc.name, envConf+"="+conf)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("scenario process: %v\n%s", err, proctest.Tail(string(out), 8000))
			}
			var n int
			for _, line := range strings.Split(string(out), "\n") {
				if _, err := fmt.Sscanf(strings.TrimSpace(line), "PUBLISHED %d", &n); err == nil {
					break
				}
			}
			if n == 0 || !strings.Contains(string(out), "--- PASS: TestConformance") {
				t.Fatalf("scenario process did not pass or published nothing:\n%s", proctest.Tail(string(out), 8000))
			}
			total += n
		})
	}
	for _, p := range []*proc{c1, c2} {
		eventually(t, 30*time.Second, fmt.Sprintf("%s to receive the %d messages published", p.name, total), func() bool { return p.received() >= total })
	}
	time.Sleep(300 * time.Millisecond)
	for _, p := range []*proc{c1, c2} {
		ids := map[string]int{}
		for _, r := range p.deliveries() {
			ids[r.id]++
		}
		if p.received() != total || len(ids) != total {
			t.Errorf("%s: %d deliveries, %d distinct, want %d", p.name, p.received(), len(ids), total)
		}
	}
}

// runScenario is a scenario process: one conformance scenario on a member
// in this process, which prints how many messages it published.
func runScenario(t *testing.T, name string) {
	doc, err := os.ReadFile(os.Getenv(envConf))
	if err != nil {
		t.Fatal(err)
	}
	var published atomic.Int64
	f := backbonetest.Features{
		New: func(t *testing.T) plugins.Backbone {
			return &formedBackbone{Backbone: parseBackbone(t, string(doc)), t: t, members: 3, published: &published}
		},
		Quiet: 300 * time.Millisecond,
	}
	for _, sc := range scenarios {
		if sc.name == name {
			sc.fn(t, f)
			fmt.Printf("PUBLISHED %d\n", published.Load())
			return
		}
	}
	t.Fatalf("no scenario %q", name)
}
