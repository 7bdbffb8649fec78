// Package zmqbatch receives many zmq messages with one cgo call.
//
// pebbe/zmq4 makes five cgo calls to receive one message (init, receive,
// data, copy, close) and a sixth for ZMQ_RCVMORE. At a hundred thousand
// messages a second those transitions, and the hand-offs of Ps the Go
// scheduler makes around them, cost more than the messages themselves.
// A Receiver makes two per batch: one that receives up to its capacity
// without waiting, and one that releases the messages once they are copied
// into Go memory. It is for the zmq app's sub loop and must stay free of
// policy.
package zmqbatch

/*
#cgo !windows pkg-config: libzmq
#include <stdlib.h>
#include <zmq.h>

typedef struct {
	zmq_msg_t   msg;
	void       *data;
	size_t      size;
	int         more;
	const char *peer;
} tb_msg;

// tb_recv receives up to n waiting messages into msgs without blocking and
// returns how many. *err is 0 when it received n, else the errno that
// stopped it (EAGAIN: no message waiting). Each received msg stays open,
// its data and metadata valid, until tb_close.
static int tb_recv(void *sock, tb_msg *msgs, int n, int want_peer, int *err) {
	int i;
	*err = 0;
	for (i = 0; i < n; i++) {
		tb_msg *m = &msgs[i];
		zmq_msg_init(&m->msg);
		if (zmq_msg_recv(&m->msg, sock, ZMQ_DONTWAIT) < 0) {
			*err = zmq_errno();
			zmq_msg_close(&m->msg);
			break;
		}
		m->data = zmq_msg_data(&m->msg);
		m->size = zmq_msg_size(&m->msg);
		m->more = zmq_msg_more(&m->msg);
		m->peer = want_peer ? zmq_msg_gets(&m->msg, "Peer-Address") : NULL;
	}
	return i;
}

static void tb_close(tb_msg *msgs, int n) {
	for (int i = 0; i < n; i++) {
		zmq_msg_close(&msgs[i].msg);
	}
}
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"syscall"
	"unsafe"

	zmq4 "github.com/pebbe/zmq4"
)

// Msg is one received message part, copied into Go memory.
type Msg struct {
	Data []byte
	// More: another part of the same message follows.
	More bool
	// Peer is the sender's address (the Peer-Address metadata), when the
	// Receiver was asked for it.
	Peer string
}

// Receiver receives from one socket. Like the socket, it must be used
// from one goroutine at a time, and not after the socket is closed.
type Receiver struct {
	so   *zmq4.Socket // kept reachable: pebbe's finalizer closes the socket
	sock unsafe.Pointer
	msgs *C.tb_msg // n of them, in C memory
	n    int
	peer bool
}

// New returns a Receiver for so that takes up to n messages per Recv and,
// when peer is true, reads each message's Peer-Address.
func New(so *zmq4.Socket, n int, peer bool) (*Receiver, error) {
	if n < 1 {
		return nil, fmt.Errorf("zmqbatch: capacity %d: must be at least 1", n)
	}
	sock, err := handle(so)
	if err != nil {
		return nil, err
	}
	msgs := (*C.tb_msg)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.tb_msg{}))))
	if msgs == nil {
		return nil, errors.New("zmqbatch: out of memory")
	}
	return &Receiver{so: so, sock: sock, msgs: msgs, n: n, peer: peer}, nil
}

// handle returns the libzmq socket behind so. pebbe/zmq4 does not export
// it; a version that stores it differently is refused here, not misused.
func handle(so *zmq4.Socket) (unsafe.Pointer, error) {
	f := reflect.ValueOf(so).Elem().FieldByName("soc")
	if !f.IsValid() || f.Kind() != reflect.UnsafePointer {
		return nil, errors.New("zmqbatch: this version of github.com/pebbe/zmq4 does not keep its socket handle in the field soc")
	}
	p := f.UnsafePointer()
	if p == nil {
		return nil, errors.New("zmqbatch: the socket is closed")
	}
	return p, nil
}

// MaxSize is the largest message a Receiver takes. Set ZMQ_MAXMSGSIZE to
// at most this, so that libzmq refuses larger ones from the peer.
const MaxSize = math.MaxInt32

// Recv appends to dst the messages waiting on the socket, up to the
// Receiver's capacity, without blocking. It returns dst unchanged and a nil
// error when none is waiting. On an error, dst holds what was received
// before it.
func (r *Receiver) Recv(dst []Msg) ([]Msg, error) {
	if r.msgs == nil {
		return dst, errors.New("zmqbatch: receive after Close")
	}
	defer runtime.KeepAlive(r.so)
	want := C.int(0)
	if r.peer {
		want = 1
	}
	var errno C.int
	k := int(C.tb_recv(r.sock, r.msgs, C.int(r.n), want, &errno))
	var tooLarge error
	if k > 0 {
		for _, m := range unsafe.Slice(r.msgs, k) {
			if m.size > MaxSize {
				tooLarge = fmt.Errorf("zmqbatch: a message of %d bytes: ZMQ_MAXMSGSIZE is not set to at most %d", uint64(m.size), MaxSize)
				break
			}
			msg := Msg{Data: C.GoBytes(m.data, C.int(m.size)), More: m.more != 0}
			if m.peer != nil {
				msg.Peer = C.GoString(m.peer)
			}
			dst = append(dst, msg)
		}
		C.tb_close(r.msgs, C.int(k))
	}
	if tooLarge != nil {
		return dst, tooLarge
	}
	switch e := syscall.Errno(errno); {
	case e == 0, e == syscall.EAGAIN, e == syscall.EINTR:
		return dst, nil
	default:
		return dst, fmt.Errorf("zmqbatch: receive: %w", zmq4.Errno(e))
	}
}

// Close releases the Receiver (not the socket).
func (r *Receiver) Close() {
	if r.msgs != nil {
		C.free(unsafe.Pointer(r.msgs))
		r.msgs = nil
	}
}
