// Package zmqfd waits for zmq sockets through Go's netpoller. A goroutine
// blocked in zmq_poll or a blocking zmq_recv is in a cgo call that keeps its
// P until sysmon takes it away, which on a quiet process takes up to 10 ms:
// on a two-core machine two such goroutines leave nothing to run the rest
// of the program. Waiting here parks the goroutine instead. It is for the
// zmq app, its client and its benchmark; it must stay free of policy.
package zmqfd

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	zmq4 "github.com/pebbe/zmq4"
)

// Waiter waits for one zmq socket, on its ZMQ_FD.
//
// ZMQ_FD only says "look at ZMQ_EVENTS": its readiness is edge-like and any
// operation on the socket may consume it, so readiness is always decided by
// ZMQ_EVENTS, checked after the netpoller's state was reset (see Readable).
type Waiter struct {
	f  *os.File // a dup of ZMQ_FD, so that closing it leaves zmq's alone
	rc syscall.RawConn
}

// New returns a Waiter for so. It does not use so afterwards; Readable
// does, so call it only from the goroutine that owns so.
func New(so *zmq4.Socket) (*Waiter, error) {
	fd, err := so.GetFd()
	if err != nil {
		return nil, fmt.Errorf("zmqfd: ZMQ_FD: %w", err)
	}
	// Close-on-exec from the start: tests and tools start processes.
	dup, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return nil, fmt.Errorf("zmqfd: dup ZMQ_FD: %w", errno)
	}
	// zmq's signaler is non-blocking already; os.NewFile then registers it
	// with the netpoller. It is never read: zmq does that.
	f := os.NewFile(dup, "zmq-fd")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("zmqfd: watch ZMQ_FD: %w", err)
	}
	return &Waiter{f: f, rc: rc}, nil
}

// Readable waits up to timeout for so to have a message to receive. The
// check runs inside RawRead, after it reset the fd's readiness: an edge
// that arrived before is then either seen by the check or still pending,
// never lost. Checking ZMQ_EVENTS also processes the socket's commands,
// which re-arms the fd.
func (w *Waiter) Readable(so *zmq4.Socket, timeout time.Duration) (bool, error) {
	if err := w.f.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return false, err
	}
	var (
		ready bool
		zerr  error
	)
	err := w.rc.Read(func(uintptr) bool {
		ready, zerr = readable(so)
		return ready || zerr != nil
	})
	switch {
	case zerr != nil:
		return false, zerr
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false, nil
	}
	return ready, err
}

// Close releases the Waiter (not the socket).
func (w *Waiter) Close() { _ = w.f.Close() }

// readable reports whether so has a message to receive now.
func readable(so *zmq4.Socket) (bool, error) {
	ev, err := so.GetEvents()
	if err != nil {
		return false, err
	}
	return ev&zmq4.POLLIN != 0, nil
}
