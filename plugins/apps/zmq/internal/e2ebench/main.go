// Command e2ebench is the zmq app's end-to-end benchmark: it starts the real
// threatbus binary and drives it over loopback with separate publisher and
// subscriber processes, and in the same run measures a plain libzmq
// forwarder (SUB→PUB proxy, no parsing) as the ceiling.
//
//	go run ./plugins/apps/zmq/internal/e2ebench [-runs 3] [-bin path/to/threatbus]
//
// For 1 and 10 subscribers it finds the highest rate sustained with zero
// loss (every subscriber gets every message within a grace period after the
// last send, and the publisher keeps up with the rate), and measures
// latency percentiles at a fixed rate after a warm-up at that rate
// (-warmup). Each figure is the median of -runs runs. It prints a Markdown
// section for BENCHMARKS.md.
//
// For tuning: -latency-only, -only and -subs narrow what runs;
// E2EBENCH_DEBUG=1 reports stalls and the bus's GC and scavenger lines
// (with GODEBUG=gctrace=1,scavtrace=1); E2EBENCH_ADMIN=host:port serves the
// bus's pprof, for CPU profiles and execution traces.
//
// The same binary is the publisher, subscriber and forwarder processes
// (-role); it is a benchmark, not part of `make test`.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	role := flag.String("role", "driver", "driver, pub, sub or forwarder")
	mode := flag.String("mode", "bus", "bus or fwd (pub and sub roles)")
	endpoint := flag.String("endpoint", "", "where to connect (pub and sub roles)")
	n := flag.Int("n", 1, "subscriber sockets (sub role)")
	count := flag.Int("count", 0, "messages (pub and sub roles)")
	rate := flag.Float64("rate", 0, "messages per second (pub role)")
	in := flag.Int("in", 0, "port to receive on (forwarder role)")
	out := flag.Int("out", 0, "port to publish on (forwarder role)")
	runs := flag.Int("runs", 3, "runs per figure; the median is reported (driver)")
	bin := flag.String("bin", "", "threatbus binary; built from ./cmd/threatbus when empty (driver)")
	dur := flag.Duration("duration", 2*time.Second, "length of one rate step (driver)")
	latRate := flag.Float64("latency-rate", 10000, "rate of the latency runs (driver)")
	latOnly := flag.Bool("latency-only", false, "measure only latency (driver; for tuning)")
	only := flag.String("only", "", "threatbus or forwarder: measure only that system (driver; for tuning)")
	subsFlag := flag.String("subs", "1,10", "subscriber counts (driver)")
	flag.DurationVar(&warmup, "warmup", 5*time.Second, "unmeasured load at the latency rate before each latency run; 0 measures a freshly started system (driver)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("e2ebench " + *role + ": ")
	switch *role {
	case "pub":
		publisher(*mode, *endpoint, *rate, *count)
	case "sub":
		subscriber(*mode, *endpoint, *n, *count)
	case "forwarder":
		forwarder(*in, *out)
	case "driver":
		var subs []int
		for _, f := range strings.Split(*subsFlag, ",") {
			var n int
			if _, err := fmt.Sscan(f, &n); err != nil || n < 1 {
				log.Fatalf("-subs %q: want numbers like 1,10", *subsFlag)
			}
			subs = append(subs, n)
		}
		if *only != "" && *only != "threatbus" && *only != "forwarder" {
			log.Fatalf("-only %q: want threatbus or forwarder", *only)
		}
		bin, cleanup := *bin, func() {}
		if *only != "forwarder" {
			bin, cleanup = buildBus(bin)
		}
		defer cleanup()
		if *latOnly {
			latencyOnly(bin, *runs, *latRate, *only, subs)
			return
		}
		driver(bin, *runs, *dur, *latRate, *only, subs)
	default:
		log.Fatalf("unknown role %q", *role)
	}
}

// system is a system under test: what publishers and subscribers connect to.
type system struct {
	name     string
	mode     string // bus or fwd
	pubEP    string // where the publisher connects (bus: its manage endpoint)
	subEP    string // where subscribers connect (bus: its manage endpoint)
	stop     func()
	describe string
	pid      int // the process under test
}

// cpuSeconds is the CPU time a process used so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ut, st float64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) / 100 // USER_HZ
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startBus(bin string) *system {
	dir, err := os.MkdirTemp("", "e2ebench")
	if err != nil {
		log.Fatal(err)
	}
	cfg := filepath.Join(dir, "threatbus.toml")
	// E2EBENCH_ADMIN=host:port serves the bus's admin endpoint with pprof,
	// for profiles and execution traces while tuning.
	admin := "listen = \"\"\n"
	if addr := os.Getenv("E2EBENCH_ADMIN"); addr != "" {
		admin = fmt.Sprintf("listen = %q\npprof = true\n", addr)
	}
	conf := "[logging]\nlevel = \"info\"\n\n[admin]\n" + admin + "\n[apps.zmq]\nhost = \"127.0.0.1\"\nmanage = 0\npub = 0\nsub = 0\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-c", cfg)
	cmd.SysProcAttr = dieWithParent()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	re := regexp.MustCompile(`msg="zmq app listening".* manage=(\d+)`)
	sc := bufio.NewScanner(stderr)
	manage := ""
	for manage == "" && sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			manage = m[1]
		}
	}
	if manage == "" {
		log.Fatal("threatbus did not start its zmq app")
	}
	go func() { // keep reading; report drops and errors
		for sc.Scan() {
			l := sc.Text()
			if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || debugLat && (strings.HasPrefix(l, "gc ") || strings.HasPrefix(l, "scav ")) {
				log.Printf("threatbus: %s", l)
			}
		}
	}()
	ep := "127.0.0.1:" + manage
	return &system{name: "threatbus", mode: "bus", pubEP: ep, subEP: ep, pid: cmd.Process.Pid, describe: "threatbus (zmq app, inmem backbone, default settings)", stop: func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}}
}

func startForwarder() *system {
	in, out := freePort(), freePort()
	cmd := exec.Command(self(), "-role", "forwarder", "-in", fmt.Sprint(in), "-out", fmt.Sprint(out))
	cmd.SysProcAttr = dieWithParent()
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	if l, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || strings.TrimSpace(l) != "ready" {
		log.Fatalf("forwarder: %q %v", l, err)
	}
	return &system{name: "forwarder", mode: "fwd", pid: cmd.Process.Pid, pubEP: fmt.Sprintf("127.0.0.1:%d", in), subEP: fmt.Sprintf("127.0.0.1:%d", out),
		describe: "libzmq SUB→PUB proxy (zmq_proxy), no parsing", stop: func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}}
}

// dieWithParent makes a child process end with the driver, however the
// driver ends.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func self() string {
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	return exe
}

// proc is a child process spoken to by lines.
type proc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func spawn(args ...string) *proc {
	cmd := exec.Command(self(), args...)
	cmd.SysProcAttr = dieWithParent()
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		log.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	p := &proc{cmd: cmd, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

func (p *proc) expect(want string, timeout time.Duration) string {
	select {
	case l, ok := <-p.lines:
		if !ok {
			log.Fatalf("%s exited while waiting for %q", p.cmd.Args, want)
		}
		if !strings.HasPrefix(l, want) {
			log.Fatalf("%s said %q, want %q", p.cmd.Args, l, want)
		}
		return l
	case <-time.After(timeout):
		log.Fatalf("%s: no %q within %s", p.cmd.Args, want, timeout)
	}
	return ""
}

func (p *proc) say(s string) {
	if _, err := io.WriteString(p.in, s+"\n"); err != nil {
		log.Fatal(err)
	}
}

func (p *proc) wait() {
	_ = p.in.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// Reports of the pub and sub roles.
type pubReport struct {
	Sent    int     `json:"sent"`
	Seconds float64 `json:"seconds"`
}

type subReport struct {
	Received []int `json:"received"` // distinct measured messages per socket
	P50      int64 `json:"p50_ns"`
	P99      int64 `json:"p99_ns"`
	Max      int64 `json:"max_ns"`
}

// stepResult is one run at one rate.
type stepResult struct {
	rate     float64
	achieved float64
	lost     int
	sub      subReport
	cpu      float64 // CPU seconds per second of the system under test while publishing
}

func (r stepResult) ok() bool { return r.lost == 0 && r.achieved >= 0.97*r.rate }

// grace is how long after the last send every message must have arrived.
const grace = time.Second

func step(s *system, subs int, rate float64, dur time.Duration) stepResult {
	count := int(rate * dur.Seconds())
	sub := spawn("-role", "sub", "-mode", s.mode, "-endpoint", s.subEP, "-n", fmt.Sprint(subs), "-count", fmt.Sprint(count))
	sub.expect("ready", 30*time.Second)
	pub := spawn("-role", "pub", "-mode", s.mode, "-endpoint", s.pubEP, "-rate", fmt.Sprint(rate), "-count", fmt.Sprint(count))
	pub.expect("ready", 30*time.Second)
	sub.expect("warm", 30*time.Second)
	cpu0 := cpuSeconds(s.pid)
	pub.say("go")
	var pr pubReport
	if err := json.Unmarshal([]byte(pub.expect("{", dur*5+30*time.Second)), &pr); err != nil {
		log.Fatal(err)
	}
	// Every message must be in within the grace period.
	select {
	case l := <-sub.lines:
		if l != "done" {
			log.Fatalf("subscriber said %q", l)
		}
	case <-time.After(grace):
	}
	cpu1 := cpuSeconds(s.pid)
	sub.say("stop")
	var sr subReport
	if err := json.Unmarshal([]byte(sub.expect("{", 30*time.Second)), &sr); err != nil {
		log.Fatal(err)
	}
	pub.wait()
	sub.wait()
	lost := 0
	for _, got := range sr.Received {
		lost += count - got
	}
	return stepResult{rate: rate, achieved: float64(pr.Sent) / pr.Seconds, lost: lost, sub: sr, cpu: (cpu1 - cpu0) / pr.Seconds}
}

// warmup is how long latencyStep loads a system before it measures.
var warmup time.Duration

// latencyStep measures latency for 5 s at rate, after warmup at the same
// rate: the steady state of a long-running daemon, not its first seconds.
// A fresh Go process spends those growing its heap into pages the kernel
// has yet to map (about 1800 page faults a second at 10 k msgs/s, each
// costing microseconds on a VM), which libzmq's malloc does not.
func latencyStep(s *system, subs int, rate float64) stepResult {
	if warmup > 0 {
		if res := step(s, subs, rate, warmup); !res.ok() {
			log.Printf("%s, %d subscriber(s): the warm-up at %.0f msgs/s lost %d or fell behind (achieved %.0f msgs/s)", s.name, subs, rate, res.lost, res.achieved)
		}
	}
	return step(s, subs, rate, 5*time.Second)
}

// passes runs a step up to twice: on a shared machine one stall of the
// subscriber process can lose messages at any rate, for either system.
func passes(s *system, subs int, rate float64, dur time.Duration) bool {
	for try := 0; try < 2; try++ {
		res := step(s, subs, rate, dur)
		log.Printf("%s, %d subscriber(s): %.0f msgs/s → achieved %.0f, lost %d, cpu %.2f", s.name, subs, rate, res.achieved, res.lost, res.cpu)
		if res.ok() {
			return true
		}
	}
	return false
}

// sustained finds the highest rate that passes: doubling from start, then
// bisecting to within 5%.
func sustained(s *system, subs int, dur time.Duration) float64 {
	lo, hi := 0.0, 0.0
	r := 20000.0
	for hi == 0 {
		if passes(s, subs, r, dur) {
			lo = r
			r *= 2
			if r > 4e6 {
				return lo
			}
		} else {
			hi = r
		}
	}
	for hi-lo > 0.05*lo && lo > 0 {
		mid := (lo + hi) / 2
		if passes(s, subs, mid, dur) {
			lo = mid
		} else {
			hi = mid
		}
	}
	if lo == 0 { // not even the first rate: bisect down
		hi = r
		for lo == 0 && hi > 500 {
			hi /= 2
			if passes(s, subs, hi, dur) {
				lo = hi
			}
		}
	}
	return lo
}

func median(xs []float64) float64 {
	s := append([]float64{}, xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func driver(bin string, runs int, dur time.Duration, latRate float64, only string, subCounts []int) {
	type key struct {
		sys  string
		subs int
	}
	load0 := loadAvg()
	rates := map[key][]float64{}
	p50s, p99s := map[key][]float64{}, map[key][]float64{}
	lost := map[key]int{}
	var describe []string
	for run := 0; run < runs; run++ {
		for _, start := range starters(bin, only) {
			s := start()
			if run == 0 {
				describe = append(describe, s.describe)
			}
			for _, subs := range subCounts {
				k := key{s.name, subs}
				res := latencyStep(s, subs, latRate)
				log.Printf("%s, %d subscriber(s), %.0f msgs/s: p50 %s p99 %s max %s, lost %d", s.name, subs, latRate,
					time.Duration(res.sub.P50), time.Duration(res.sub.P99), time.Duration(res.sub.Max), res.lost)
				p50s[k] = append(p50s[k], float64(res.sub.P50))
				p99s[k] = append(p99s[k], float64(res.sub.P99))
				lost[k] += res.lost
				rates[k] = append(rates[k], sustained(s, subs, dur))
			}
			s.stop()
		}
	}
	host, _ := os.Hostname()
	cpu := cpuModel()
	fmt.Printf("\n## zmq app end-to-end\n\n")
	fmt.Printf("`go run ./plugins/apps/zmq/internal/e2ebench -runs %d` on %s (%s, %d cores, %s), %s.\n",
		runs, host, cpu, runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02"))
	fmt.Printf("Real binaries over loopback: one publisher process, one subscriber process with 1 or 10 SUB sockets\n")
	fmt.Printf("(for threatbus each is an app with its own subscription), %d-byte indicators. Sustained rate: the\n", len(payloadTemplate()))
	fmt.Printf("highest rate (doubling from 20k/s, then bisecting to 5%%, %s per step) at which every subscriber got\n", dur)
	fmt.Printf("every message within %s of the last send and the publisher kept up (best of two tries per rate).\n", grace)
	if warmup > 0 {
		fmt.Printf("Latency: 5 s at %.0fk msgs/s after %s at that rate unmeasured. ", latRate/1000, warmup)
	} else {
		fmt.Printf("Latency: 5 s at %.0fk msgs/s, cold (no warm-up). ", latRate/1000)
	}
	fmt.Printf("The forwarder's queues hold as much\nas the bus's defaults on the same path. Medians of %d runs.\n\n", runs)
	fmt.Printf("| system | subscribers | sustained msgs/s, zero loss | ratio to forwarder | p50 at %.0fk/s | p99 at %.0fk/s |\n", latRate/1000, latRate/1000)
	fmt.Printf("|---|---|---|---|---|---|\n")
	for _, subs := range subCounts {
		for _, sys := range []string{"threatbus", "forwarder"} {
			k := key{sys, subs}
			if len(rates[k]) == 0 { // not measured (-only)
				continue
			}
			ratio := "–"
			if fwd := rates[key{"forwarder", subs}]; len(fwd) > 0 {
				ratio = fmt.Sprintf("%.0f%%", 100*median(rates[k])/median(fwd))
			}
			loss := ""
			if lost[k] > 0 {
				loss = fmt.Sprintf(" (%d lost)", lost[k])
			}
			fmt.Printf("| %s | %d | %.0f | %s | %s | %s%s |\n", sys, subs, median(rates[k]), ratio,
				time.Duration(median(p50s[k])).Round(time.Microsecond), time.Duration(median(p99s[k])).Round(time.Microsecond), loss)
		}
	}
	fmt.Printf("\nSystems: %s.\n", strings.Join(describe, "; "))
	fmt.Printf("Load average of the machine (1, 5, 15 min) at the start: %s; at the end: %s.\n", load0, loadAvg())
	for _, subs := range subCounts {
		fmt.Printf("Runs, %d subscriber(s): threatbus %v, forwarder %v msgs/s.\n", subs, rounded(rates[key{"threatbus", subs}]), rounded(rates[key{"forwarder", subs}]))
	}
}

func rounded(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x)
	}
	return out
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}

// buildBus returns bin, or when it is empty a threatbus binary built from
// ./cmd/threatbus, and what removes it.
func buildBus(bin string) (string, func()) {
	if bin != "" {
		return bin, func() {}
	}
	dir, err := os.MkdirTemp("", "e2ebench-bin")
	if err != nil {
		log.Fatal(err)
	}
	bin = filepath.Join(dir, "threatbus")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/threatbus").CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(dir)
		log.Fatalf("build threatbus (run from the repository root): %v\n%s", err, out)
	}
	return bin, func() { _ = os.RemoveAll(dir) }
}

// latencyOnly measures latency alone (at a given rate, also the CPU use
// and losses), for tuning. It alternates the systems run by run, as driver
// does: the machine's pace drifts over minutes, and alternation lets both
// see it. Each run starts its system afresh, so -warmup 0 measures a cold
// one.
func latencyOnly(bin string, runs int, rate float64, only string, subCounts []int) {
	for run := 0; run < runs; run++ {
		for _, start := range starters(bin, only) {
			s := start()
			for _, subs := range subCounts {
				res := latencyStep(s, subs, rate)
				log.Printf("%s, %d subscriber(s), %.0f msgs/s: p50 %s p99 %s max %s, lost %d, cpu %.2f", s.name, subs, rate,
					time.Duration(res.sub.P50), time.Duration(res.sub.P99), time.Duration(res.sub.Max), res.lost, res.cpu)
			}
			s.stop()
		}
	}
}

// starters returns how to start the systems to measure: threatbus and the
// forwarder, or only the one named by -only.
func starters(bin, only string) []func() *system {
	var out []func() *system
	if only == "" || only == "threatbus" {
		out = append(out, func() *system { return startBus(bin) })
	}
	if only == "" || only == "forwarder" {
		out = append(out, startForwarder)
	}
	return out
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
