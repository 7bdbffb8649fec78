package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/tests/bustest"
)

// stuckApp subscribes with a sink that never finishes, and publishes, so a
// graceful stop has something to wait for.
type stuckApp struct{}

func (*stuckApp) SampleConfig() string { return "[apps.stuck]\n" }
func (*stuckApp) Init() error          { return nil }
func (*stuckApp) Run(ctx context.Context, bus plugins.Bus) error {
	_, err := bus.Subscribe(ctx, plugins.SubscribeRequest{Topics: []string{""}, Sink: func(ctx context.Context, _ *messages.Envelope) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	if err != nil {
		return err
	}
	for i := 0; i < 3; i++ {
		_ = bus.Publish(ctx, []byte(`{"type":"snapshotrequest","snapshot_type":1,"snapshot_id":"x","snapshot":1}`))
	}
	started <- struct{}{}
	<-ctx.Done()
	return nil
}

var started = make(chan struct{}, 10)

func init() {
	plugins.AddApp("stuck", func() plugins.App { return &stuckApp{} })
}

func runCLI(t *testing.T, signals <-chan os.Signal, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb, signals)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "threatbus.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInfoCommands(t *testing.T) {
	if code, out, _ := runCLI(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "threatbus ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, nil, "plugins"); code != 0 || !strings.Contains(out, "backbones: cluster inmem rabbitmq") || !strings.Contains(out, "stuck") {
		t.Fatalf("plugins: %d %q", code, out)
	}
	code, out, _ := runCLI(t, nil, "config")
	if code != 0 {
		t.Fatalf("config: %d", code)
	}
	if _, err := config.Parse("config output", []byte(out), nil); err != nil {
		t.Fatalf("`threatbus config` prints a config the loader rejects: %v", err)
	}
	if code, _, errs := runCLI(t, nil, "frobnicate"); code != exitUsage || !strings.Contains(errs, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	if code, _, _ := runCLI(t, nil); code != exitUsage {
		t.Fatalf("no command: %d", code)
	}
}

func TestCheck(t *testing.T) {
	code, out, errs := runCLI(t, nil, "check", "-c", writeFile(t, "[logging]\nlevel = \"debug\"\n"))
	if code != 0 || !strings.Contains(out, `level = "debug"`) || !strings.Contains(out, "[backbones.inmem]") {
		t.Fatalf("check: %d\n%s\n%s", code, out, errs)
	}
	bad := writeFile(t, "[logging]\nlevle = 1\n[apps.nosuch]\n[bus]\noutbox = \"x\"\n")
	code, out, errs = runCLI(t, nil, "check", "-c", bad)
	if code != exitUsage || out != "" {
		t.Fatalf("bad config: exit %d, stdout %q", code, out)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], ":5: bus.outbox") {
		// A type error stops decoding: only it is reported.
		t.Fatalf("bad config errors:\n%s", errs)
	}
	bad = writeFile(t, "[logging]\nlevle = 1\n[apps.nosuch]\n")
	_, _, errs = runCLI(t, nil, "check", "-c", bad)
	lines = strings.Split(strings.TrimSpace(errs), "\n")
	if len(lines) != 2 || !strings.Contains(errs, ":2: logging.levle: unknown key") || !strings.Contains(errs, ":3: apps.nosuch: no such app plugin") {
		t.Fatalf("want one line per problem:\n%s", errs)
	}
	if code, _, errs := runCLI(t, nil, "check", "-c", "/nonexistent.toml"); code != exitUsage || !strings.Contains(errs, "no such file") {
		t.Fatalf("missing file: %d %q", code, errs)
	}
}

func TestRunRejectsBadConfigWithoutStarting(t *testing.T) {
	code, _, errs := runCLI(t, nil, "run", "-c", writeFile(t, "[apps.stuck]\nx = 1\n"))
	if code != exitUsage || !strings.Contains(errs, "apps.stuck.x: unknown key") || strings.Contains(errs, "started") {
		t.Fatalf("exit %d\n%s", code, errs)
	}
}

// startRun runs `threatbus run` on config text in the test process and
// returns once it has started: its signal channel, its exit code to come,
// its log and the admin server's address.
func startRun(t *testing.T, text string) (chan os.Signal, chan int, *bustest.SyncBuffer, string) {
	t.Helper()
	signals := make(chan os.Signal, 2)
	done := make(chan int, 1)
	errb := &bustest.SyncBuffer{}
	cfg := writeFile(t, text)
	go func() { done <- run([]string{"run", "-c", cfg}, &bytes.Buffer{}, errb, signals) }()
	waitFor(t, func() bool { return strings.Contains(errb.String(), "threatbus started") })
	m := regexp.MustCompile(`admin server listening.* addr=(\S+)`).FindStringSubmatch(errb.String())
	if m == nil {
		t.Fatalf("no admin address logged:\n%s", errb.String())
	}
	return signals, done, errb, m[1]
}

// TestRunStopsOnSignal: the first signal drains and exits 0.
func TestRunStopsOnSignal(t *testing.T) {
	signals, done, errb, admin := startRun(t, "[bus]\ndrain_timeout = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n")

	// `threatbus status` reads the running bus through its admin server.
	code, out, errs := runCLI(t, nil, "status", "--admin", admin)
	if code != exitOK || !strings.Contains(out, "PLUGIN") || !strings.Contains(out, "inmem") || !strings.Contains(out, "ready") {
		t.Fatalf("status: %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := runCLI(t, nil, "status", "--admin", "127.0.0.1:1"); code != exitFail || !strings.Contains(errs, "is the bus running") {
		t.Fatalf("status without a bus: %d %s", code, errs)
	}
	signals <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != exitOK || !strings.Contains(errb.String(), "threatbus stopped") {
			t.Fatalf("exit %d\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after SIGTERM")
	}
}

// TestSecondSignalExitsAtOnce: while a stop waits on a stuck subscriber, a
// second signal ends the process without waiting.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	signals := make(chan os.Signal, 2)
	done := make(chan int, 1)
	var errb bustest.SyncBuffer
	cfg := writeFile(t, "[bus]\ndrain_timeout = \"60s\"\n[admin]\nlisten = \"\"\n[apps.stuck]\n")
	go func() { done <- run([]string{"run", "-c", cfg}, &bytes.Buffer{}, &errb, signals) }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("stuck app did not start")
	}
	signals <- syscall.SIGINT
	waitFor(t, func() bool { return strings.Contains(errb.String(), "stopping") })
	select {
	case code := <-done:
		t.Fatalf("returned %d before the second signal although the sink is stuck", code)
	case <-time.After(200 * time.Millisecond):
	}
	t0 := time.Now()
	signals <- syscall.SIGINT
	select {
	case code := <-done:
		if code != exitSignal || time.Since(t0) > 2*time.Second {
			t.Fatalf("exit %d after %s", code, time.Since(t0))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second signal did not exit")
	}
}

// TestBinaryStopsOnSIGINTAndSIGTERM runs the real binary, as `make run`
// does, with the built-in default configuration. It also checks the GODEBUG
// the bus runs with: sysmonSetting added, or the user's schedtrace kept.
func TestBinaryStopsOnSIGINTAndSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "threatbus")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		sig           syscall.Signal
		godebug, want string
	}{
		{syscall.SIGINT, "", "GODEBUG=" + sysmonSetting},
		{syscall.SIGTERM, "madvdontneed=1", "GODEBUG=madvdontneed=1," + sysmonSetting},
		{syscall.SIGTERM, "schedtrace=0", "GODEBUG=schedtrace=0"},
	} {
		cmd := exec.Command(bin, "run")
		cmd.Dir = t.TempDir() // no config.toml here: the built-in one is used
		env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
		env = append(env, "THREATBUS_ADMIN_LISTEN=127.0.0.1:0")
		if tc.godebug != "" {
			env = append(env, "GODEBUG="+tc.godebug)
		}
		cmd.Env = env
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		expectLine(t, lines, `msg="threatbus started"`)
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		var godebug []string
		for _, kv := range strings.Split(string(environ), "\x00") {
			if strings.HasPrefix(kv, "GODEBUG=") {
				godebug = append(godebug, kv)
			}
		}
		if len(godebug) != 1 || godebug[0] != tc.want {
			t.Errorf("GODEBUG %q: the bus runs with %q, want [%q]", tc.godebug, godebug, tc.want)
		}
		if err := cmd.Process.Signal(tc.sig); err != nil {
			t.Fatal(err)
		}
		expectLine(t, lines, `msg="threatbus stopped"`)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: %v", tc.sig, err)
		}
	}
}

func TestWithSysmonSetting(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want []string
		ok   bool
	}{
		{[]string{"A=1"}, []string{"A=1", "GODEBUG=" + sysmonSetting}, true},
		{[]string{"GODEBUG=", "A=1"}, []string{"A=1", "GODEBUG=" + sysmonSetting}, true},
		{[]string{"GODEBUG=gctrace=1", "A=1"}, []string{"A=1", "GODEBUG=gctrace=1," + sysmonSetting}, true},
		{[]string{"GODEBUG=gctrace=1,schedtrace=0"}, []string{"GODEBUG=gctrace=1,schedtrace=0"}, false},
		{[]string{"GODEBUG=schedtrace=1000"}, []string{"GODEBUG=schedtrace=1000"}, false},
		{[]string{"GODEBUG=xschedtrace=1"}, []string{"GODEBUG=xschedtrace=1," + sysmonSetting}, true},
		// The first GODEBUG counts, as for os.Getenv; the others go.
		{[]string{"GODEBUG=gctrace=1", "GODEBUG=schedtrace=0"}, []string{"GODEBUG=gctrace=1," + sysmonSetting}, true},
	} {
		got, ok := withSysmonSetting(tc.env)
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("withSysmonSetting(%q) = %q, %v; want %q, %v", tc.env, got, ok, tc.want, tc.ok)
		}
	}
}

func expectLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before %q", want)
			}
			if strings.Contains(l, want) {
				return
			}
		case <-timeout:
			t.Fatalf("no %q within 15s", want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGCPercent: the daemon collects less often than Go's default unless
// GOGC says otherwise.
func TestGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	if v, set := os.LookupEnv("GOGC"); set {
		os.Unsetenv("GOGC")
		defer os.Setenv("GOGC", v)
	}
	tuneGC()
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Fatalf("GOGC unset: gc percent %d, want %d", got, gcPercent)
	}
	t.Setenv("GOGC", "150")
	tuneGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC set: gc percent changed to %d", got)
	}
}

// TestOpenAdminRequestDoesNotHoldTheStop: an admin request that takes long
// (a CPU profile, as `go tool pprof …/profile?seconds=60` asks for) neither
// uses up the drain's time nor delays the exit: the admin server closes
// once the bus has stopped.
func TestOpenAdminRequestDoesNotHoldTheStop(t *testing.T) {
	signals, done, errb, admin := startRun(t, "[bus]\ndrain_timeout = \"8s\"\n[admin]\nlisten = \"127.0.0.1:0\"\npprof = true\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/debug/pprof/profile?seconds=60", nil)
	inFlight := make(chan struct{})
	go func() {
		close(inFlight)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-inFlight
	time.Sleep(300 * time.Millisecond) // the profile is being taken
	t0 := time.Now()
	signals <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != exitOK || time.Since(t0) > 3*time.Second {
			t.Fatalf("exit %d after %v with a profile being taken (drain_timeout 8s)\n%s", code, time.Since(t0), errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after SIGTERM")
	}
}

// TestRunAndCheckRefuseArguments: "check bad.toml" must not validate
// ./config.toml instead and succeed.
func TestRunAndCheckRefuseArguments(t *testing.T) {
	for _, cmd := range []string{"check", "run"} {
		// A run that wrongly starts stops at once on the queued signal.
		signals := make(chan os.Signal, 1)
		signals <- syscall.SIGTERM
		code, _, errs := runCLI(t, signals, cmd, "/etc/some.toml")
		if code != exitUsage || !strings.Contains(errs, `unexpected argument "/etc/some.toml"`) {
			t.Errorf("%s with an argument: exit %d\n%s", cmd, code, errs)
		}
	}
}
