// Command testbus runs one real bus (the config loader, the actor tree, the
// cluster backbone) with a line-oriented app, so that the backbone's tests
// can run cluster members as separate processes (several protoactor remotes
// in one process race inside the library). It is a test helper, not part of
// the product.
//
// Usage: testbus CONFIG. The config enables [backbones.cluster] and
// [apps.lines]. The lines app subscribes to every topic and prints "READY",
// then one line "RECV <topic> <envelope id> <base64 payload>" per delivery.
// Each line on stdin is either a base64 payload to publish or "?", which
// prints "STATUS <json>" with the backbone's Status, or "%", which prints
// "DAEMON <json>" with the daemon's counters, or "#", which prints
// "COUNT <n>", the number of deliveries so far, "!flood <n> [<pad>]", which
// publishes n generated indicators (each with an x_pad property of pad
// bytes, when given) and prints "FLOODED <n> <seconds>" (for benchmarks and
// large messages), or "!crash", which crashes
// the backbone actor (fault injection must be enabled): the bus restarts
// it, which stops and starts the backbone in this process. SIGTERM or SIGINT drains
// and stops the bus; at exit it prints "STATS <json>" with the backbone's
// Status, the daemon's counters and "leaks": the stacks of goroutines of the
// cluster package still running after the stop (there must be none).
//
// Snapshots: "!snapshot" on stdin subscribes to stix2/indicator with a one
// hour window and prints "SNAP <base64 payload>" per delivery of that
// subscription. With [apps.snapper] in the config, the snapper app answers
// indicator snapshot requests with the same five indicators on every member
// and prints "ASKED <snapshot id>" per request.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/threatbus/threatbus/actors"
	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/cluster"
)

var (
	outMu sync.Mutex
	out   = bufio.NewWriter(os.Stdout)
)

func emit(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(out, format+"\n", args...)
	out.Flush()
}

var (
	backbone *cluster.Backbone
	// countOnly (TESTBUS_COUNT_ONLY=1, for benchmarks) counts deliveries
	// instead of printing them; "#" on stdin prints "COUNT <n>".
	countOnly = os.Getenv("TESTBUS_COUNT_ONLY") != ""
	received  atomic.Uint64
	daemon    *actors.Daemon
	cfgName   string
)

// lines is the app: stdin to the bus, the bus to stdout.
type lines struct{}

func (*lines) SampleConfig() string { return "[apps.lines]\n" }
func (*lines) Init() error          { return nil }

func (*lines) Run(ctx context.Context, bus plugins.Bus) error {
	_, err := bus.Subscribe(ctx, plugins.SubscribeRequest{
		Topics: []string{""},
		Name:   "stdout",
		Sink: func(_ context.Context, m *messages.Envelope) error {
			if received.Add(1); !countOnly {
				emit("RECV %s %s %s", m.Topic, m.Id, base64.StdEncoding.EncodeToString(m.Payload))
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	emit("READY")
	go func() {
		in := bufio.NewScanner(os.Stdin)
		in.Buffer(make([]byte, 1<<20), 1<<24)
		for in.Scan() {
			if in.Text() == "#" {
				emit("COUNT %d", received.Load())
				continue
			}
			if n, ok := strings.CutPrefix(in.Text(), "!flood "); ok {
				flood(ctx, bus, n)
				continue
			}
			if in.Text() == "!snapshot" {
				_, err := bus.Subscribe(ctx, plugins.SubscribeRequest{
					Topics:   []string{messages.TopicIndicator},
					Name:     "snapshot",
					Snapshot: time.Hour,
					Sink: func(_ context.Context, m *messages.Envelope) error {
						emit("SNAP %s", base64.StdEncoding.EncodeToString(m.Payload))
						return nil
					},
				})
				if err != nil {
					bus.Logger().Error("snapshot subscription", "error", err)
				}
				continue
			}
			if in.Text() == "!crash" {
				if err := daemon.Crash(cfgName); err != nil {
					bus.Logger().Error("crash", "error", err)
				}
				continue
			}
			if in.Text() == "%" {
				j, _ := json.Marshal(daemon.Stats())
				emit("DAEMON %s", j)
				continue
			}
			if in.Text() == "?" {
				j, _ := json.Marshal(backbone.Status())
				emit("STATUS %s", j)
				continue
			}
			p, err := base64.StdEncoding.DecodeString(in.Text())
			if err != nil {
				bus.Logger().Error("bad input line", "error", err)
				continue
			}
			if err := bus.Publish(ctx, p); err != nil {
				bus.Logger().Error("publish", "error", err)
			}
		}
	}()
	<-ctx.Done()
	return nil
}

// snapper answers indicator snapshot requests alike on every member, as
// members configured alike (one MISP behind all of them) do.
type snapper struct{}

func (*snapper) SampleConfig() string { return "[apps.snapper]\n" }
func (*snapper) Init() error          { return nil }
func (*snapper) Run(ctx context.Context, _ plugins.Bus) error {
	<-ctx.Done()
	return nil
}

// SnapshotBodies are the indicators every snapper answers with.
func snapshotBodies() ([][]byte, error) {
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var out [][]byte
	for i := 0; i < 5; i++ {
		ind, err := stix.NewIndicator(fmt.Sprintf("[ipv4-addr:value = '192.0.2.%d']", i), at,
			stix.WithID(fmt.Sprintf("indicator--00000000-0000-4000-8000-00000000000%d", i)), stix.WithCreated(at), stix.WithModified(at))
		if err != nil {
			return nil, err
		}
		out = append(out, ind.Raw)
	}
	return out, nil
}

func (*snapper) Snapshot(_ context.Context, req plugins.SnapshotRequest, reply func([]byte) error) error {
	if req.Type != messages.SnapshotType_SNAPSHOT_TYPE_INDICATOR {
		return nil
	}
	emit("ASKED %s", req.ID)
	bodies, err := snapshotBodies()
	if err != nil {
		return err
	}
	for _, b := range bodies {
		if err := reply(b); err != nil {
			return err
		}
	}
	return nil
}

func init() {
	plugins.AddApp("lines", func() plugins.App { return &lines{} })
	plugins.AddApp("snapper", func() plugins.App { return &snapper{} })
}

// flood publishes n distinct indicators as fast as the bus takes them,
// then prints "FLOODED <n> <seconds>". args is "<n>" or "<n> <pad>": each
// indicator then carries an x_pad string of pad bytes.
func flood(ctx context.Context, bus plugins.Bus, args string) {
	f := strings.Fields(args)
	n, pad, err := 0, 0, fmt.Errorf("%d fields", len(f))
	if len(f) == 1 || len(f) == 2 {
		n, err = strconv.Atoi(f[0])
	}
	if err == nil && len(f) == 2 {
		pad, err = strconv.Atoi(f[1])
	}
	if err != nil || n < 1 || pad < 0 {
		bus.Logger().Error("flood: want a count and an optional pad size", "args", args)
		return
	}
	payloads := make([][]byte, n)
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range payloads {
		opts := []stix.Option{stix.WithProperty("x_seq", json.RawMessage(strconv.Itoa(i)))}
		if pad > 0 {
			opts = append(opts, stix.WithProperty("x_pad", json.RawMessage(strconv.Quote(strings.Repeat("a", pad)))))
		}
		ind, err := stix.NewIndicator(fmt.Sprintf("[ipv4-addr:value = '10.%d.%d.%d']", i>>16&255, i>>8&255, i&255), from, opts...)
		if err != nil {
			bus.Logger().Error("flood", "error", err)
			return
		}
		payloads[i] = ind.Raw
	}
	start := time.Now()
	for _, p := range payloads {
		if err := bus.Publish(ctx, p); err != nil {
			bus.Logger().Error("publish", "error", err)
		}
	}
	emit("FLOODED %d %f", n, time.Since(start).Seconds())
}

// leaks returns the stacks of goroutines still running code of the
// cluster backbone, once the bus has stopped: there must be none.
func leaks() []string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var out []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "threatbus/plugins/backbones/cluster.") && !strings.Contains(g, "main.leaks") {
				out = append(out, g)
			}
		}
		if len(out) == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: testbus CONFIG")
		os.Exit(2)
	}
	cfg, err := config.Load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	b, ok := cfg.Backbone.Plugin.(*cluster.Backbone)
	if !ok {
		fmt.Fprintln(os.Stderr, "testbus: the config must enable [backbones.cluster]")
		os.Exit(2)
	}
	backbone = b
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	cfgName = cfg.Backbone.Name
	d, err := actors.Start(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	daemon = d
	<-sigs
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Bus.DrainTimeout.D())
	defer cancel()
	code := 0
	if err := d.Stop(ctx); err != nil {
		log.Error("stop", "error", err)
		code = 1
	}
	j, _ := json.Marshal(map[string]any{"daemon": d.Stats(), "backbone": b.Status(), "leaks": leaks()})
	emit("STATS %s", j)
	os.Exit(code)
}
