package zmqbatch

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	zmq4 "github.com/pebbe/zmq4"
)

func pair(t *testing.T, endpoint string) (in, out *zmq4.Socket) {
	t.Helper()
	var err error
	if in, err = zmq4.NewSocket(zmq4.PULL); err != nil {
		t.Fatal(err)
	}
	if out, err = zmq4.NewSocket(zmq4.PUSH); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = out.Close(); _ = in.Close() })
	_ = in.SetLinger(0)
	_ = out.SetLinger(0)
	if err := in.Bind(endpoint); err != nil {
		t.Fatal(err)
	}
	ep, _ := in.GetLastEndpoint()
	if err := out.Connect(ep); err != nil {
		t.Fatal(err)
	}
	return in, out
}

// receiver returns a Receiver of capacity n on a connected pair's PULL end,
// and the PUSH end.
func receiver(t *testing.T, endpoint string, n int, peer bool) (*Receiver, *zmq4.Socket) {
	t.Helper()
	in, out := pair(t, endpoint)
	r, err := New(in, n, peer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, out
}

// recvAll receives until want messages are in or 5 s passed, and fails if a
// batch exceeds the Receiver's capacity n.
func recvAll(t *testing.T, r *Receiver, want, n int) []Msg {
	t.Helper()
	var got []Msg
	var err error
	for deadline := time.Now().Add(5 * time.Second); len(got) < want && time.Now().Before(deadline); {
		before := len(got)
		if got, err = r.Recv(got); err != nil {
			t.Fatal(err)
		}
		if len(got)-before > n {
			t.Fatalf("a batch of %d, capacity %d", len(got)-before, n)
		}
		if len(got) == before {
			time.Sleep(time.Millisecond)
		}
	}
	if len(got) != want {
		t.Fatalf("received %d messages, want %d", len(got), want)
	}
	return got
}

// payload i has a size that varies across zmq's small-message boundary.
func payload(i int) []byte {
	return bytes.Repeat([]byte{byte('a' + i%26)}, []int{0, 1, 29, 33, 400, 70000}[i%6])
}

// TestRecv: every message arrives once, in order and intact, a batch at a
// time; multipart messages keep their More flags across batch ends.
func TestRecv(t *testing.T) {
	r, out := receiver(t, "inproc://zmqbatch-recv", 7, false)
	if got, err := r.Recv(nil); len(got) != 0 || err != nil {
		t.Fatalf("nothing sent: %d messages, %v", len(got), err)
	}
	type part struct {
		data []byte
		more bool
	}
	var want []part
	for i := 0; i < 300; i++ {
		if i%50 == 3 { // a three-part message
			for j := 0; j < 3; j++ {
				flag := zmq4.SNDMORE
				if j == 2 {
					flag = 0
				}
				if _, err := out.SendBytes(payload(i+j), flag); err != nil {
					t.Fatal(err)
				}
				want = append(want, part{payload(i + j), j < 2})
			}
			continue
		}
		if _, err := out.SendBytes(payload(i), 0); err != nil {
			t.Fatal(err)
		}
		want = append(want, part{payload(i), false})
	}
	got := recvAll(t, r, len(want), 7)
	for i := range want {
		if !bytes.Equal(got[i].Data, want[i].data) || got[i].More != want[i].more || got[i].Peer != "" {
			t.Fatalf("part %d: %d bytes more=%v peer=%q, want %d bytes more=%v", i, len(got[i].Data), got[i].More, got[i].Peer, len(want[i].data), want[i].more)
		}
	}
}

// TestRecvPeer: over TCP, each message carries the sender's address.
func TestRecvPeer(t *testing.T) {
	r, out := receiver(t, "tcp://127.0.0.1:*", 16, true)
	for i := 0; i < 10; i++ {
		if _, err := out.SendBytes([]byte(fmt.Sprint(i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	got := recvAll(t, r, 10, 16)
	for i, m := range got {
		if string(m.Data) != fmt.Sprint(i) || m.Peer != "127.0.0.1" {
			t.Fatalf("message %d: %q from %q", i, m.Data, m.Peer)
		}
	}
}

func TestNewRefusesClosedSocket(t *testing.T) {
	s, err := zmq4.NewSocket(zmq4.PULL)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if _, err := New(s, 8, false); err == nil {
		t.Fatal("a closed socket was accepted")
	}
}
