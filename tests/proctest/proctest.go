// Package proctest runs a test helper command — typically a real bus with a
// line-oriented app, such as a backbone's internal/testbus — as a child
// process: the multi-host tests of the RabbitMQ and cluster backbones run one
// bus per process. It builds the command once per test binary, starts it on
// a configuration file, hands each line it prints to the test, writes lines
// to its stdin, and kills it when the test ends.
//
// The protocol is the command's own, except for two lines: the command
// prints "READY" once it accepts input, and "STATS <json>" as its last line
// when it stops on SIGTERM.
package proctest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/threatbus/threatbus/tests/bustest"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{} // package → binary
)

// Build builds pkg (relative to the test's package, e.g. "./internal/testbus")
// once per test binary and returns the binary's path. The binary lives in a
// directory Cleanup removes at exit.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin
	}
	dir, err := os.MkdirTemp("", "proctest")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = bin
	return bin
}

// Cleanup removes what Build built; call it from TestMain after m.Run.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	for pkg, bin := range built {
		os.RemoveAll(filepath.Dir(bin))
		delete(built, pkg)
	}
}

// Options describe one process.
type Options struct {
	// Env is added to the test's environment.
	Env []string
	// Prefix goes before the command (e.g. ip netns exec NS).
	Prefix []string
	// Start bounds the wait for READY; 40s when zero.
	Start time.Duration
}

// Proc is a running helper process.
type Proc struct {
	Name string
	// Log is what the process wrote to stderr.
	Log *bustest.SyncBuffer

	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan struct{}
	stats chan string
	done  chan struct{}
}

// Start writes conf to a file and runs bin on it. Every line the process
// prints other than READY and STATS goes to handle, split at the first
// space, on one goroutine, in order. Start returns once READY arrived. When
// the test ends the process is killed (and continued first, in case a test
// stopped it); a failed test logs the end of its stderr.
func Start(t testing.TB, name, bin, conf string, opts Options, handle func(kind, rest string)) *Proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, opts.Prefix...), bin, path)
	p := &Proc{Name: name, Log: &bustest.SyncBuffer{}, cmd: exec.Command(args[0], args[1:]...),
		ready: make(chan struct{}), stats: make(chan string, 1), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), opts.Env...)
	p.cmd.Stderr = p.Log
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.read(stdout, handle)
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s log (last 6000 bytes):\n%s", name, Tail(p.Log.String(), 6000))
		}
	})
	wait := opts.Start
	if wait == 0 {
		wait = 40 * time.Second
	}
	select {
	case <-p.ready:
	case <-p.done:
		t.Fatalf("%s exited:\n%s", name, p.Log.String())
	case <-time.After(wait):
		t.Fatalf("%s did not start:\n%s", name, p.Log.String())
	}
	return p
}

func (p *Proc) read(r io.Reader, handle func(kind, rest string)) {
	defer close(p.done)
	lines := bufio.NewScanner(r)
	lines.Buffer(make([]byte, 1<<20), 1<<24)
	for lines.Scan() {
		kind, rest, _ := strings.Cut(lines.Text(), " ")
		switch kind {
		case "READY":
			close(p.ready)
		case "STATS":
			p.stats <- rest
		default:
			handle(kind, rest)
		}
	}
	_ = p.cmd.Wait()
}

// Send writes one line to the process's stdin.
func (p *Proc) Send(t testing.TB, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(p.stdin, line); err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
}

// TrySend writes one line, reporting whether the process took it.
func (p *Proc) TrySend(line string) bool {
	_, err := fmt.Fprintln(p.stdin, line)
	return err == nil
}

// Signal sends sig to the process.
func (p *Proc) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
}

// Kill sends SIGKILL and waits for the process to go.
func (p *Proc) Kill(t testing.TB) {
	t.Helper()
	p.Signal(t, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not die", p.Name)
	}
}

// Stop sends SIGTERM, waits up to wait for the process to exit with 0, and
// returns its STATS, decoded.
func (p *Proc) Stop(t testing.TB, wait time.Duration) map[string]json.RawMessage {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(wait):
		t.Fatalf("%s did not stop", p.Name)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited with %d:\n%s", p.Name, code, Tail(p.Log.String(), 6000))
	}
	var st map[string]json.RawMessage
	select {
	case s := <-p.stats:
		if err := json.Unmarshal([]byte(s), &st); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("%s printed no stats", p.Name)
	}
	return st
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
