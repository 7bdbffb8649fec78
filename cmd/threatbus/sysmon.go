package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
)

// sysmonSetting keeps the Go runtime's sysmon thread out of its deep sleep.
//
// Sysmon deep-sleeps whenever every P is idle, and the next syscall or cgo
// call wakes it (the zmq app makes a cgo call for each burst it receives).
// Awake, it ticks every 20 µs for about a millisecond before it backs off,
// and goes back to deep sleep as soon as the process is idle again. A bus
// that handles a burst every millisecond or so thus pays thousands of extra
// thread wake-ups a second: 14 % of the bus's CPU at 10k msgs/s with ten
// zmq subscribers (BENCHMARKS.md). There is no setting for the tick
// (golang/go#18236). With schedtrace set, sysmon never deep-sleeps and
// backs off to a 10 ms tick when it has nothing to do.
//
// Keeping sysmon awake is a side effect of the setting, and the one we
// want. The others, documented in the README: a scheduler summary line
// ("SCHED …") on stderr every 2^31 ms (about 25 days), and at start on a
// host up for longer than that; a scheduler dump (every P, M and goroutine)
// before the traceback when the process dies of a fatal error; a hundred
// sysmon wake-ups a second while idle.
const sysmonSetting = "schedtrace=2147483647"

// keepSysmonAwake re-executes the process with sysmonSetting added to
// GODEBUG, unless GODEBUG already sets schedtrace (GODEBUG=schedtrace=0
// opts out). The runtime reads the setting only at start, hence the exec.
// On Linux it execs /proc/self/exe, the file this process runs, even if
// its path was replaced meanwhile (an upgrade). It returns only when it did
// not re-execute; a failure is reported on stderr and the bus runs without
// the setting.
func keepSysmonAwake(stderr io.Writer) {
	env, ok := withSysmonSetting(os.Environ())
	if !ok {
		return
	}
	exe := "/proc/self/exe"
	var err error
	if runtime.GOOS != "linux" {
		exe, err = os.Executable()
	}
	if err == nil {
		err = syscall.Exec(exe, os.Args, env)
	}
	fmt.Fprintf(stderr, "threatbus: running without GODEBUG=%s: re-executing failed: %v\n", sysmonSetting, err)
}

// withSysmonSetting returns env with sysmonSetting added to GODEBUG, and
// false when GODEBUG already sets schedtrace.
func withSysmonSetting(env []string) ([]string, bool) {
	out := make([]string, 0, len(env)+1)
	godebug, seen := "", false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if !seen { // the first counts, as for os.Getenv
				godebug, seen = v, true
			}
			continue
		}
		out = append(out, kv)
	}
	for _, setting := range strings.Split(godebug, ",") {
		if strings.HasPrefix(setting, "schedtrace=") {
			return env, false
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return append(out, "GODEBUG="+godebug+sysmonSetting), true
}
