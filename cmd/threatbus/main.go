// Command threatbus is the threat-intelligence bus daemon and its tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/threatbus/threatbus"
	"github.com/threatbus/threatbus/actors"
	"github.com/threatbus/threatbus/internal/admin"
	"github.com/threatbus/threatbus/internal/buildinfo"
	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/plugins"
	_ "github.com/threatbus/threatbus/plugins/all"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitUsage  = 2 // bad command line or bad configuration: nothing was started
	exitSignal = 130
)

const usage = `threatbus — a threat-intelligence bus

Usage:
  threatbus run [-c FILE]     start the bus (default config.toml; the built-in
                              default configuration when that file is absent)
  threatbus check -c FILE     validate a configuration and print it as loaded
  threatbus plugins           list the compiled-in plugins
  threatbus config            print a complete sample configuration
  threatbus status [--admin HOST:PORT]
                              show a running bus's plugins, subscriptions and
                              counters (default 127.0.0.1:13380)
  threatbus version           print the version
  threatbus subscribe [--endpoint HOST:PORT] [--topic TOPIC]... [--snapshot DAYS]
                              print what a bus's zmq app sends as JSON lines
                              (default 127.0.0.1:13370, stix2/indicator)
  threatbus publish [--endpoint HOST:PORT] [FILE|-]
                              send the STIX objects of FILE (JSON lines or
                              bundles; - is stdin) to a bus's zmq app
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "run" {
		keepSysmonAwake(os.Stderr) // returns only when it did not re-execute
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, nil))
}

// run is main without the process: signals, when non-nil, replaces the
// process's SIGINT/SIGTERM (tests send on it).
func run(args []string, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "run":
		return runBus(args, stderr, signals)
	case "check":
		return check(args, stdout, stderr)
	case "plugins":
		for _, kind := range []plugins.Kind{plugins.KindBackbone, plugins.KindApp} {
			fmt.Fprintf(stdout, "%s: %s\n", kind, strings.Join(plugins.Names(kind), " "))
		}
		return exitOK
	case "config":
		fmt.Fprint(stdout, config.Sample())
		return exitOK
	case "status":
		return statusCmd(args, stdout, stderr)
	case "subscribe":
		return subscribeCmd(args, stdout, stderr, signals)
	case "publish":
		return publishCmd(args, os.Stdin, stderr, signals)
	case "version":
		fmt.Fprintf(stdout, "threatbus %s\n", buildinfo.String())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "threatbus: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// loadConfig loads path; when path is the default and absent, it falls back
// to the configuration built into the binary.
func loadConfig(path string, explicit bool) (*config.Config, string, error) {
	if !explicit {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			cfg, err := config.Parse("built-in config.toml", threatbus.DefaultConfig, os.Environ())
			return cfg, "built-in config.toml", err
		}
	}
	cfg, err := config.Load(path)
	return cfg, path, err
}

// printConfigError prints one line per problem.
func printConfigError(w io.Writer, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			fmt.Fprintf(w, "threatbus: %v\n", e)
		}
		return
	}
	fmt.Fprintf(w, "threatbus: %v\n", err)
}

func configFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "config.toml", "configuration file")
	return fs, path
}

func explicitFlag(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseNoArgs parses flags and refuses anything after them: "check
// bad.toml" must not validate ./config.toml instead and succeed.
func parseNoArgs(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q (the configuration file goes with -c)", fs.Arg(0))
		fmt.Fprintf(stderr, "threatbus %s: %v\n", fs.Name(), err)
		fs.Usage()
		return err
	}
	return nil
}

func check(args []string, stdout, stderr io.Writer) int {
	fs, path := configFlags("check", stderr)
	if err := parseNoArgs(fs, args, stderr); err != nil {
		return exitUsage
	}
	cfg, _, err := loadConfig(*path, true)
	if err != nil {
		printConfigError(stderr, err)
		return exitUsage
	}
	if err := cfg.Encode(stdout); err != nil {
		fmt.Fprintf(stderr, "threatbus: %v\n", err)
		return exitFail
	}
	return exitOK
}

func newLogger(l config.Logging, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// gcPercent is the bus's GOGC unless the environment sets one. Its live
// heap is small (megabytes) and every message allocates, so Go's default of
// 100 collects dozens of times a second under load; 400 cut the zmq app's
// CPU per message by about a tenth and its p99 latency at 10k msgs/s by a
// fifth to a third (BENCHMARKS.md), for a few more megabytes of heap.
const gcPercent = 400

// tuneGC applies gcPercent when GOGC is not set.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
}

func runBus(args []string, stderr io.Writer, signals <-chan os.Signal) int {
	fs, path := configFlags("run", stderr)
	if err := parseNoArgs(fs, args, stderr); err != nil {
		return exitUsage
	}
	cfg, source, err := loadConfig(*path, explicitFlag(fs, "c"))
	if err != nil {
		printConfigError(stderr, err)
		return exitUsage
	}
	log := newLogger(cfg.Logging, stderr)
	tuneGC()

	if signals == nil {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(ch)
		signals = ch
	}

	d, err := actors.Start(cfg, log)
	if err != nil {
		log.Error("threatbus failed to start", "error", err)
		return exitFail
	}
	var adm *admin.Server
	if cfg.Admin.Listen != "" {
		if adm, err = admin.Start(cfg.Admin, d, log.With("component", "admin")); err != nil {
			log.Error("threatbus failed to start", "error", err)
			_ = d.Stop(context.Background())
			return exitFail
		}
		log.Info("admin server listening", "addr", adm.Addr())
	}
	apps := make([]string, len(cfg.Apps))
	for i, a := range cfg.Apps {
		apps[i] = a.Name
	}
	log.Info("threatbus started", "version", buildinfo.String(), "config", source, "backbone", cfg.Backbone.Name, "apps", strings.Join(apps, ","))

	sig := <-signals
	timeout := cfg.Bus.DrainTimeout.D()
	log.Info("stopping: draining in-flight messages; signal again to exit at once", "signal", sig.String(), "deadline", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The admin server keeps answering during the drain (readyz, status,
	// metrics show how it goes) and is closed once the bus has stopped:
	// waiting for its open requests (a pprof profile, say) first would take
	// the drain's time, and hold up a second signal.
	stopped := make(chan error, 1)
	go func() {
		err := d.Stop(ctx)
		if adm != nil {
			_ = adm.Close()
		}
		stopped <- err
	}()
	select {
	case err := <-stopped:
		if err != nil {
			log.Warn("stopped, but not everything drained in time", "error", err)
		}
		logDrops(log, d.Stats())
		log.Info("threatbus stopped")
		return exitOK
	case sig := <-signals:
		log.Warn("second signal: exiting without draining", "signal", sig.String())
		return exitSignal
	case <-time.After(timeout + 5*time.Second):
		log.Error("stop hung past its deadline; exiting")
		return exitFail
	}
}

// logDrops reports, at exit, every message the bus accepted and then lost.
func logDrops(log *slog.Logger, st actors.Stats) {
	for reason, n := range st.Drops {
		log.Warn("messages dropped during this run", "reason", reason, "count", n)
	}
}
