package zmqfd

import (
	"fmt"
	"testing"
	"time"

	zmq4 "github.com/pebbe/zmq4"
)

func TestReadable(t *testing.T) {
	in, err := zmq4.NewSocket(zmq4.PULL)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := zmq4.NewSocket(zmq4.PUSH)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	_ = in.SetLinger(0)
	_ = out.SetLinger(0)
	// A name of its own per run: libzmq frees a closed socket's inproc
	// name asynchronously, so -count=N would find the last run's taken.
	ep := fmt.Sprintf("inproc://zmqfd-test-%d", time.Now().UnixNano())
	if err := in.Bind(ep); err != nil {
		t.Fatal(err)
	}
	if err := out.Connect(ep); err != nil {
		t.Fatal(err)
	}
	w, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	start := time.Now()
	if ok, err := w.Readable(in, 30*time.Millisecond); ok || err != nil {
		t.Fatalf("readable with nothing sent: %v %v", ok, err)
	}
	if time.Since(start) < 25*time.Millisecond {
		t.Fatal("returned before the timeout")
	}
	// Messages sent before, during and after a wait are all seen, each
	// within far less than the timeout (a lost edge would cost all of it).
	send := make(chan struct{})
	sent := make(chan struct{})
	go func() { // the one goroutine that uses out from here on
		defer close(sent)
		for range send {
			_, _ = out.Send("x", 0)
		}
	}()
	defer func() { close(send); <-sent }()
	for i := 0; i < 200; i++ {
		send <- struct{}{}
		start := time.Now()
		ok, err := w.Readable(in, 5*time.Second)
		if !ok || err != nil {
			t.Fatalf("message %d: %v %v", i, ok, err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Fatalf("message %d seen after %s", i, d)
		}
		if _, err := in.Recv(zmq4.DONTWAIT); err != nil {
			t.Fatal(err)
		}
	}
}
