package misp

import (
	"bytes"
	"context"
	"fmt"
	"syscall"
	"time"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/threatbus/threatbus/plugins"
)

// The topics MISP publishes on its ZeroMQ socket that this plugin reads.
const (
	topicAttribute = "misp_json_attribute"
	topicSelf      = "misp_json_self" // heartbeats: {"status": …, "uptime": N}
)

const (
	// pollPeriod is how often the intake goroutine looks at ctx and at
	// MISP's silence.
	pollPeriod = 100 * time.Millisecond
	// batch bounds the frames read between looks at ctx.
	batch = 1024
	// rcvHWM is how many frames libzmq holds for us; MISP sends bursts when
	// events are published.
	rcvHWM = 100000
	// zmtpHeartbeat makes libzmq ping MISP's publisher, so that a dead TCP
	// connection is noticed and re-established.
	zmtpHeartbeat = 10 * time.Second
	monitorAddr   = "inproc://misp-monitor"
)

// runZMQ owns the SUB socket connected to MISP and the socket monitor that
// reports its connection state. libzmq reconnects by itself; this goroutine
// only reads, and reports liveness.
func (a *App) runZMQ(ctx context.Context, bus plugins.Bus) error {
	st := a.st
	log := st.logger()
	zctx, err := zmq4.NewContext()
	if err != nil {
		return fmt.Errorf("misp: zmq context: %w", err)
	}
	sock, err := zctx.NewSocket(zmq4.SUB)
	if err != nil {
		_ = zctx.Term()
		return fmt.Errorf("misp: zmq socket: %w", err)
	}
	var mon *zmq4.Socket
	defer func() {
		_ = sock.Close()
		if mon != nil {
			_ = mon.Close()
		}
		_ = zctx.Term()
	}()
	if err := a.configureSUB(sock); err != nil {
		return fmt.Errorf("misp: zmq socket options: %w", err)
	}
	events := zmq4.EVENT_CONNECTED | zmq4.EVENT_DISCONNECTED | zmq4.EVENT_CONNECT_RETRIED |
		zmq4.EVENT_HANDSHAKE_SUCCEEDED | zmq4.EVENT_HANDSHAKE_FAILED_AUTH |
		zmq4.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq4.EVENT_HANDSHAKE_FAILED_NO_DETAIL
	if err := sock.Monitor(monitorAddr, events); err != nil {
		return fmt.Errorf("misp: zmq monitor: %w", err)
	}
	if mon, err = zctx.NewSocket(zmq4.PAIR); err != nil {
		return fmt.Errorf("misp: zmq monitor socket: %w", err)
	}
	_ = mon.SetLinger(0)
	if err := mon.Connect(monitorAddr); err != nil {
		return fmt.Errorf("misp: zmq monitor socket: %w", err)
	}
	st.live.started(time.Now())
	if err := sock.Connect(st.endpoint); err != nil {
		return &plugins.ConfigError{Err: fmt.Errorf("misp: connect to %s: %w", st.endpoint, err)}
	}
	log.Info("misp: connecting to MISP's ZeroMQ publisher", "endpoint", st.endpoint, "plain_auth", a.ZMQ.Username != "")

	poller := zmq4.NewPoller()
	poller.Add(sock, zmq4.POLLIN)
	poller.Add(mon, zmq4.POLLIN)
	for ctx.Err() == nil {
		if _, err := poller.Poll(pollPeriod); err != nil {
			if ctx.Err() != nil || zmq4.AsErrno(err) == zmq4.Errno(syscall.EINTR) {
				continue
			}
			return fmt.Errorf("misp: zmq poll: %w", err)
		}
		if err := a.drainMonitor(mon); err != nil {
			return err
		}
		if err := a.drainSUB(ctx, bus, sock); err != nil {
			return err
		}
		if silent, last := st.live.checkSilence(a.ZMQ.HeartbeatTimeout.D(), time.Now()); silent {
			log.Warn("misp: MISP is silent, not even heartbeats arrive", "endpoint", st.endpoint,
				"timeout", a.ZMQ.HeartbeatTimeout.D(), "last_heard", lastHeardText(last))
		}
	}
	return nil
}

func (a *App) configureSUB(sock *zmq4.Socket) error {
	steps := []func() error{
		func() error { return sock.SetLinger(0) },
		func() error { return sock.SetIpv6(true) },
		func() error { return sock.SetRcvhwm(rcvHWM) },
		func() error { return sock.SetReconnectIvl(500 * time.Millisecond) },
		func() error { return sock.SetReconnectIvlMax(10 * time.Second) },
		func() error { return sock.SetHeartbeatIvl(zmtpHeartbeat) },
		func() error { return sock.SetHeartbeatTimeout(3 * zmtpHeartbeat) },
		func() error { return sock.SetSubscribe(topicAttribute) },
		func() error { return sock.SetSubscribe(topicSelf) },
	}
	if a.ZMQ.Username != "" {
		steps = append(steps, func() error { return sock.ClientAuthPlain(a.ZMQ.Username, a.ZMQ.Password.Reveal()) })
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// drainMonitor turns socket events into the liveness state.
func (a *App) drainMonitor(mon *zmq4.Socket) error {
	st := a.st
	log := st.logger()
	for i := 0; i < batch; i++ {
		ev, addr, value, err := mon.RecvEvent(zmq4.DONTWAIT)
		if err != nil {
			if isEAGAIN(err) {
				return nil
			}
			return fmt.Errorf("misp: zmq monitor: %w", err)
		}
		now := time.Now()
		switch ev {
		case zmq4.EVENT_HANDSHAKE_SUCCEEDED:
			if st.live.setConnected(true, "", now) {
				log.Info("misp: connected to MISP's ZeroMQ publisher", "endpoint", addr)
			}
		case zmq4.EVENT_DISCONNECTED:
			if st.live.disconnected(now) {
				_, last := st.live.state()
				log.Warn("misp: disconnected from MISP's ZeroMQ publisher; libzmq reconnects", "endpoint", addr, "last_heard", lastHeardText(last))
			}
		case zmq4.EVENT_HANDSHAKE_FAILED_AUTH:
			problem := fmt.Sprintf("MISP's ZeroMQ publisher refused the PLAIN credentials of zmq.username (ZAP status %d)", value)
			if a.ZMQ.Username == "" {
				problem = fmt.Sprintf("MISP's ZeroMQ publisher requires authentication (ZAP status %d): set zmq.username and zmq.password", value)
			}
			if st.live.setConnected(false, problem, now) {
				log.Error("misp: "+problem, "endpoint", addr)
			}
		case zmq4.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq4.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
			problem := fmt.Sprintf("the ZeroMQ handshake with MISP failed (%s, %d): is %s MISP's ZeroMQ publisher, with the same security mechanism?", ev, value, st.endpoint)
			if st.live.setConnected(false, problem, now) {
				log.Error("misp: "+problem, "endpoint", addr)
			}
		default: // connected (handshake pending), connect retried
			log.Debug("misp: zmq socket event", "event", ev.String(), "endpoint", addr, "value", value)
		}
	}
	return nil
}

// drainSUB reads the frames waiting on the SUB socket.
func (a *App) drainSUB(ctx context.Context, bus plugins.Bus, sock *zmq4.Socket) error {
	st := a.st
	for i := 0; i < batch; i++ {
		frame, err := sock.RecvBytes(zmq4.DONTWAIT)
		if err != nil {
			if isEAGAIN(err) {
				return nil
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("misp: zmq receive: %w", err)
		}
		if more, _ := sock.GetRcvmore(); more {
			for more {
				if _, err := sock.RecvBytes(0); err != nil {
					break
				}
				more, _ = sock.GetRcvmore()
			}
			st.skipped(st.counts.skipped, "zmq", skipf(causeMalformed, "a multipart message: MISP sends one frame per message"))
			continue
		}
		if st.live.heard(time.Now()) {
			st.logger().Info("misp: MISP is heard from again", "endpoint", st.endpoint)
		}
		topic, payload, _ := bytes.Cut(frame, []byte(" "))
		switch string(topic) {
		case topicAttribute:
			a.intake(ctx, bus, payload)
		case topicSelf:
			st.counts.heartbeats.Add(1)
		default:
			// Another topic that starts like ours (zmq subscriptions are
			// prefixes): not for us.
			st.logger().Debug("misp: ignored a zmq message", "topic", fmt.Sprintf("%.64q", topic))
		}
	}
	return nil
}

func isEAGAIN(err error) bool {
	return zmq4.AsErrno(err) == zmq4.Errno(syscall.EAGAIN)
}
