// Command testbus runs one real bus (the config loader, the actor tree, the
// RabbitMQ backbone) with a line-oriented app, so that the backbone's tests
// can run several buses as separate processes. It is a test helper, not part
// of the product.
//
// Usage: testbus CONFIG. The config enables [backbones.rabbitmq] and
// [apps.lines]. The lines app subscribes to every topic and prints
// "READY", then one line "RECV <topic> <base64 payload>" per delivery;
// every line on stdin is a base64 payload it publishes. SIGTERM or SIGINT
// drains and stops the bus; at exit it prints "STATS <json>" with the
// backbone's counters and the daemon's.
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
	"sync"
	"syscall"

	"github.com/threatbus/threatbus/actors"
	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/rabbitmq"
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

// lines is the app: stdin to the bus, the bus to stdout.
type lines struct{}

func (*lines) SampleConfig() string { return "[apps.lines]\n" }
func (*lines) Init() error          { return nil }

func (*lines) Run(ctx context.Context, bus plugins.Bus) error {
	// The subscription lives as long as the bus; stopping the bus ends it.
	_, err := bus.Subscribe(ctx, plugins.SubscribeRequest{
		Topics: []string{""},
		Name:   "stdout",
		Sink: func(_ context.Context, m *messages.Envelope) error {
			emit("RECV %s %s", m.Topic, base64.StdEncoding.EncodeToString(m.Payload))
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

func init() {
	plugins.AddApp("lines", func() plugins.App { return &lines{} })
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
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	d, err := actors.Start(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	<-sigs
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Bus.DrainTimeout.D())
	defer cancel()
	code := 0
	if err := d.Stop(ctx); err != nil {
		log.Error("stop", "error", err)
		code = 1
	}
	stats := map[string]any{"daemon": d.Stats()}
	if b, ok := cfg.Backbone.Plugin.(*rabbitmq.Backbone); ok {
		stats["backbone"] = b.Stats()
	}
	j, _ := json.Marshal(stats)
	emit("STATS %s", j)
	os.Exit(code)
}
