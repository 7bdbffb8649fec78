package zmq_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// python is Debian's interpreter, which has python3-zmq (the python3 first
// on PATH may be another one).
const python = "/usr/bin/python3"

// daemon is the real threatbus binary, running a configuration with the zmq
// app on free ports.
type daemon struct {
	cmd      *exec.Cmd
	endpoint string
	lines    chan string
}

// buildBinary builds cmd/threatbus into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "threatbus")
	out, err := exec.Command("go", "build", "-o", bin, "../../../cmd/threatbus").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

var listening = regexp.MustCompile(`msg="zmq app listening".* manage=(\d+) pub=(\d+) sub=(\d+)`)

// startDaemon runs bin with the zmq app on free loopback ports and returns
// once the app listens.
func startDaemon(t *testing.T, bin string) *daemon {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "threatbus.toml")
	// No admin server: tests in other packages run binaries on its port.
	conf := "[logging]\nlevel = \"info\"\n\n[admin]\nlisten = \"\"\n\n[apps.zmq]\nhost = \"127.0.0.1\"\nmanage = 0\npub = 0\nsub = 0\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-c", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case d.lines <- sc.Text():
			default: // nobody reads any more
			}
		}
		close(d.lines)
	}()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.After(timeout)
	var seen []string
	for d.endpoint == "" {
		select {
		case l, ok := <-d.lines:
			if !ok {
				t.Fatalf("threatbus exited before the zmq app listened:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if m := listening.FindStringSubmatch(l); m != nil {
				d.endpoint = "127.0.0.1:" + m[1]
			}
		case <-deadline:
			t.Fatal("the zmq app did not listen")
		}
	}
	return d
}

func (d *daemon) stop(t *testing.T) {
	if d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("threatbus: %v", err)
		}
	case <-time.After(timeout):
		_ = d.cmd.Process.Kill()
		<-done
		t.Error("threatbus did not stop on SIGTERM")
	}
}

// TestPythonClient runs a client written like the existing Python apps,
// with Debian's python3-zmq, against the real binary.
func TestPythonClient(t *testing.T) {
	if out, err := exec.Command(python, "-c", "import zmq").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import zmq (%v: %s): run scripts/setup.sh, which installs Debian's python3-zmq", python, err, strings.TrimSpace(string(out)))
	}
	d := startDaemon(t, buildBinary(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/pyclient.py", d.endpoint,
		"../../../../shared/testdata/stix/indicator-opencti-style.json",
		"../../../../shared/testdata/stix/sighting-vast-retro.json")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nOK ") {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	t.Logf("python client:\n%s", out)
}
