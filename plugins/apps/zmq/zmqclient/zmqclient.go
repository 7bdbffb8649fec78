// Package zmqclient is a Go client of the zmq app protocol
// (shared/specs/zmq-app.md), written the way the existing Python apps
// (vast-threatbus, the zmq app template) use it: a fresh REQ socket per
// management call with LINGER 0 and a 5 s poll timeout, a SUB socket on the
// app's private topic, a heartbeat every 5 s and a new subscription when a
// heartbeat fails. The threatbus CLI, the plugin's tests and its benchmark
// use it. It is a client only: the plugin must not depend on it.
package zmqclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/threatbus/threatbus/plugins/apps/zmq/internal/zmqfd"
)

// Protocol constants, as the existing clients use them.
const (
	// Timeout is how long a management call waits for its reply.
	Timeout = 5 * time.Second
	// HeartbeatInterval is how often clients send a heartbeat.
	HeartbeatInterval = 5 * time.Second
)

// Statuses the bus answers with.
const (
	StatusSuccess = "success"
	StatusError   = "error"
	StatusUnknown = "unknown request"
)

// ErrTimeout is returned when no reply or message arrived in time.
var ErrTimeout = errors.New("zmqclient: timed out")

// Reply is a management reply. Raw holds its bytes.
type Reply struct {
	Topic   string `json:"topic"`
	PubPort int    `json:"pub_port"`
	SubPort int    `json:"sub_port"`
	Status  string `json:"status"`
	Raw     []byte `json:"-"`
}

// Request sends body, one management request, to endpoint ("host:port") on
// a fresh REQ socket and returns the reply's bytes. The socket is closed with
// LINGER 0 whatever happens, so an unanswered request leaves nothing behind.
func Request(endpoint string, body []byte, timeout time.Duration) ([]byte, error) {
	sock, err := zmq4.NewSocket(zmq4.REQ)
	if err != nil {
		return nil, fmt.Errorf("zmqclient: new REQ socket: %w", err)
	}
	defer func() { _ = sock.Close() }()
	if err := sock.SetLinger(0); err != nil {
		return nil, fmt.Errorf("zmqclient: set linger: %w", err)
	}
	if err := allowIPv6(sock, endpoint); err != nil {
		return nil, err
	}
	if err := sock.Connect("tcp://" + endpoint); err != nil {
		return nil, fmt.Errorf("zmqclient: connect tcp://%s: %w", endpoint, err)
	}
	if _, err := sock.SendBytes(body, 0); err != nil {
		return nil, fmt.Errorf("zmqclient: send to %s: %w", endpoint, err)
	}
	poller := zmq4.NewPoller()
	poller.Add(sock, zmq4.POLLIN)
	polled, err := poller.Poll(timeout)
	if err != nil {
		return nil, fmt.Errorf("zmqclient: poll %s: %w", endpoint, err)
	}
	if len(polled) == 0 {
		return nil, fmt.Errorf("%w: no reply from %s within %s", ErrTimeout, endpoint, timeout)
	}
	reply, err := sock.RecvBytes(0)
	if err != nil {
		return nil, fmt.Errorf("zmqclient: receive from %s: %w", endpoint, err)
	}
	return reply, nil
}

// Call sends a request built from v (marshalled as JSON) and decodes the
// reply.
func Call(endpoint string, v any, timeout time.Duration) (Reply, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return Reply{}, err
	}
	raw, err := Request(endpoint, body, timeout)
	if err != nil {
		return Reply{}, err
	}
	r := Reply{Raw: raw}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("zmqclient: reply %q: %w", raw, err)
	}
	return r, nil
}

// Subscribe asks for the topics (one or more) with a snapshot of days (0 for
// none). A reply whose status is not success is returned with an error.
func Subscribe(endpoint string, topics []string, days int, timeout time.Duration) (Reply, error) {
	var topic any = topics
	if len(topics) == 1 {
		topic = topics[0] // what most clients send
	}
	r, err := Call(endpoint, map[string]any{"action": "subscribe", "topic": topic, "snapshot": days}, timeout)
	if err == nil && r.Status != StatusSuccess {
		err = fmt.Errorf("zmqclient: subscribe %v: status %q", topics, r.Status)
	}
	return r, err
}

// Heartbeat sends a heartbeat for the private topic p2p and returns the
// status ("success", or "error" when the bus does not know the topic).
func Heartbeat(endpoint, p2p string, timeout time.Duration) (string, error) {
	r, err := Call(endpoint, map[string]any{"action": "heartbeat", "topic": p2p}, timeout)
	return r.Status, err
}

// Unsubscribe ends the subscription of p2p and returns the status.
func Unsubscribe(endpoint, p2p string, timeout time.Duration) (string, error) {
	r, err := Call(endpoint, map[string]any{"action": "unsubscribe", "topic": p2p}, timeout)
	return r.Status, err
}

// Host returns the host part of a management endpoint: clients connect their
// PUB and SUB sockets to the host they used for management.
func Host(endpoint string) (string, error) {
	h, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return "", fmt.Errorf("zmqclient: endpoint %q: want HOST:PORT", endpoint)
	}
	return h, nil
}

// allowIPv6 enables IPv6 on so when the address needs it (zmq's default is
// IPv4 only).
func allowIPv6(so *zmq4.Socket, addr string) error {
	if strings.Contains(addr, "[") || strings.Contains(addr, ":") && net.ParseIP(addr) != nil {
		if err := so.SetIpv6(true); err != nil {
			return fmt.Errorf("zmqclient: enable IPv6: %w", err)
		}
	}
	return nil
}

func tcp(host string, port int) string {
	return "tcp://" + net.JoinHostPort(host, strconv.Itoa(port))
}

func isEAGAIN(err error) bool { return zmq4.AsErrno(err) == zmq4.Errno(syscall.EAGAIN) }

// Receiver is an app's SUB socket, connected to the bus's pub port and
// subscribed to its private topic. It is not safe for concurrent use.
type Receiver struct {
	sock  *zmq4.Socket
	wait  *zmqfd.Waiter // waits without holding a P (see package zmqfd)
	ep    string
	topic string
}

// NewReceiver connects to host:port and subscribes to p2p. hwm is the
// receive queue (ZMQ_RCVHWM); 0 keeps zmq's default of 1000.
func NewReceiver(host string, port int, p2p string, hwm int) (*Receiver, error) {
	sock, err := zmq4.NewSocket(zmq4.SUB)
	if err != nil {
		return nil, fmt.Errorf("zmqclient: new SUB socket: %w", err)
	}
	r := &Receiver{sock: sock, ep: tcp(host, port)}
	if err := r.setup(hwm, p2p); err != nil {
		_ = sock.Close()
		return nil, err
	}
	if r.wait, err = zmqfd.New(sock); err != nil {
		_ = sock.Close()
		return nil, err
	}
	return r, nil
}

func (r *Receiver) setup(hwm int, p2p string) error {
	if err := r.sock.SetLinger(0); err != nil {
		return err
	}
	if hwm > 0 {
		if err := r.sock.SetRcvhwm(hwm); err != nil {
			return err
		}
	}
	if err := allowIPv6(r.sock, r.ep); err != nil {
		return err
	}
	if err := r.sock.Connect(r.ep); err != nil {
		return fmt.Errorf("zmqclient: connect %s: %w", r.ep, err)
	}
	return r.Resubscribe(p2p)
}

// Resubscribe switches to a new private topic.
func (r *Receiver) Resubscribe(p2p string) error {
	if r.topic != "" {
		if err := r.sock.SetUnsubscribe(r.topic); err != nil {
			return fmt.Errorf("zmqclient: unsubscribe %s: %w", r.topic, err)
		}
	}
	if err := r.sock.SetSubscribe(p2p); err != nil {
		return fmt.Errorf("zmqclient: subscribe %s: %w", p2p, err)
	}
	r.topic = p2p
	return nil
}

// Receive waits up to timeout for one frame and splits it at the first
// space, as clients do: topic is "<p2p><suffix>".
func (r *Receiver) Receive(timeout time.Duration) (topic string, payload []byte, err error) {
	frame, err := r.sock.RecvBytes(zmq4.DONTWAIT)
	if err != nil && isEAGAIN(err) {
		ok, werr := r.wait.Readable(r.sock, timeout)
		if werr != nil {
			return "", nil, fmt.Errorf("zmqclient: wait: %w", werr)
		}
		if !ok {
			return "", nil, ErrTimeout
		}
		frame, err = r.sock.RecvBytes(zmq4.DONTWAIT)
	}
	if err != nil {
		return "", nil, fmt.Errorf("zmqclient: receive: %w", err)
	}
	for i, c := range frame {
		if c == ' ' {
			return string(frame[:i]), frame[i+1:], nil
		}
	}
	return string(frame), nil, nil
}

// Close closes the socket.
func (r *Receiver) Close() error {
	r.wait.Close()
	return r.sock.Close()
}

// Publisher is an app's PUB socket, connected to the bus's sub port. It is
// an XPUB with ZMQ_XPUB_NODROP, so it can tell when the bus's subscription
// arrived (nothing sent before that is lost to the slow joiner) and blocks
// instead of dropping when the bus falls behind. It is not safe for
// concurrent use.
type Publisher struct {
	zctx *zmq4.Context // its own, so that Close can wait for the queue to drain
	sock *zmq4.Socket
}

// NewPublisher connects to host:port. hwm is the send queue; 0 keeps zmq's
// default of 1000.
func NewPublisher(host string, port int, hwm int) (*Publisher, error) {
	zctx, err := zmq4.NewContext()
	if err != nil {
		return nil, fmt.Errorf("zmqclient: new context: %w", err)
	}
	sock, err := zctx.NewSocket(zmq4.XPUB)
	if err != nil {
		_ = zctx.Term()
		return nil, fmt.Errorf("zmqclient: new XPUB socket: %w", err)
	}
	p := &Publisher{zctx: zctx, sock: sock}
	setup := func() error {
		if err := sock.SetXpubNodrop(true); err != nil {
			return err
		}
		if hwm > 0 {
			if err := sock.SetSndhwm(hwm); err != nil {
				return err
			}
		}
		if err := sock.SetLinger(10 * time.Second); err != nil {
			return err
		}
		if err := allowIPv6(sock, host); err != nil {
			return err
		}
		return sock.Connect(tcp(host, port))
	}
	if err := setup(); err != nil {
		_ = sock.SetLinger(0)
		_ = sock.Close()
		_ = zctx.Term()
		return nil, fmt.Errorf("zmqclient: publisher to %s: %w", tcp(host, port), err)
	}
	return p, nil
}

// WaitReady waits until the bus has subscribed to stix2/ on this
// connection: from then on nothing sent is lost.
func (p *Publisher) WaitReady(ctx context.Context) error {
	poller := zmq4.NewPoller()
	poller.Add(p.sock, zmq4.POLLIN)
	for {
		polled, err := poller.Poll(100 * time.Millisecond)
		if err != nil {
			return fmt.Errorf("zmqclient: poll: %w", err)
		}
		if len(polled) > 0 {
			msg, err := p.sock.RecvBytes(0)
			if err != nil {
				return fmt.Errorf("zmqclient: receive subscription: %w", err)
			}
			if len(msg) > 0 && msg[0] == 1 && string(msg[1:]) == "stix2/" {
				return nil
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("zmqclient: the bus did not connect: %w", err)
		}
	}
}

// Publish sends "<topic> <payload>", waiting while the queue is full.
func (p *Publisher) Publish(topic string, payload []byte) error {
	frame := make([]byte, 0, len(topic)+1+len(payload))
	frame = append(append(append(frame, topic...), ' '), payload...)
	return p.Send(frame)
}

// Send sends one raw frame, waiting while the queue is full.
func (p *Publisher) Send(frame []byte) error {
	if _, err := p.sock.SendBytes(frame, 0); err != nil {
		return fmt.Errorf("zmqclient: send: %w", err)
	}
	return nil
}

// SendParts sends one multipart message (the protocol has none; tests use
// it to check that the bus refuses them).
func (p *Publisher) SendParts(parts ...[]byte) error {
	for i, part := range parts {
		flag := zmq4.SNDMORE
		if i == len(parts)-1 {
			flag = 0
		}
		if _, err := p.sock.SendBytes(part, flag); err != nil {
			return fmt.Errorf("zmqclient: send: %w", err)
		}
	}
	return nil
}

// Close closes the socket and returns once the frames still queued are
// sent, or linger has passed.
func (p *Publisher) Close(linger time.Duration) error {
	_ = p.sock.SetLinger(linger)
	err := p.sock.Close()
	if terr := p.zctx.Term(); err == nil {
		err = terr
	}
	return err
}
