package rabbitmq_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/rabbitmq"
)

// fakeBroker plays RabbitMQ's side of the AMQP handshake on one
// connection, as far as a test wants it to go before it fails.
type fakeBroker struct{ c net.Conn }

// start reads the protocol header and sends connection.start: AMQP 0-9-1,
// no server properties, PLAIN, en_US.
func (f fakeBroker) start() error {
	if _, err := io.ReadFull(f.c, make([]byte, 8)); err != nil {
		return err
	}
	p := binary.BigEndian.AppendUint16(nil, 10) // class connection
	p = binary.BigEndian.AppendUint16(p, 10)    // method start
	p = append(p, 0, 9)
	p = binary.BigEndian.AppendUint32(p, 0) // server-properties: an empty table
	p = appendLongstr(p, "PLAIN")
	p = appendLongstr(p, "en_US")
	return f.method(p)
}

// tune sends connection.tune: channel-max 2047, frame-max 128 KiB,
// heartbeat 60 s.
func (f fakeBroker) tune() error {
	p := binary.BigEndian.AppendUint16(nil, 10)
	p = binary.BigEndian.AppendUint16(p, 30)
	p = binary.BigEndian.AppendUint16(p, 2047)
	p = binary.BigEndian.AppendUint32(p, 128<<10)
	p = binary.BigEndian.AppendUint16(p, 60)
	return f.method(p)
}

// method writes a method frame on channel 0.
func (f fakeBroker) method(payload []byte) error {
	frame := []byte{1, 0, 0}
	frame = binary.BigEndian.AppendUint32(frame, uint32(len(payload)))
	frame = append(frame, payload...)
	frame = append(frame, 0xCE)
	_, err := f.c.Write(frame)
	return err
}

// expect reads one method frame and checks it is connection.<method>.
func (f fakeBroker) expect(method uint16) error {
	head := make([]byte, 7)
	if _, err := io.ReadFull(f.c, head); err != nil {
		return err
	}
	body := make([]byte, binary.BigEndian.Uint32(head[3:])+1)
	if _, err := io.ReadFull(f.c, body); err != nil {
		return err
	}
	if head[0] != 1 || len(body) < 5 || binary.BigEndian.Uint16(body) != 10 || binary.BigEndian.Uint16(body[2:]) != method {
		return fmt.Errorf("fake broker: got frame type %d %x, want connection method %d", head[0], body[:min(len(body), 4)], method)
	}
	return nil
}

// reset closes the connection with a TCP reset, as RabbitMQ closes one
// whose login it refuses.
func (f fakeBroker) reset() {
	if tc, ok := f.c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	f.c.Close()
}

func appendLongstr(p []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint32(p, uint32(len(s))), s...)
}

// stall answers the protocol header with connection.start and then nothing:
// a broker too busy to answer the login, or a front that stops forwarding.
func stall(c net.Conn, _ int) bool {
	f := fakeBroker{c}
	if f.start() == nil {
		_, _ = io.Copy(io.Discard, c) // until the proxy closes it
	}
	return true
}

// cutAtLogin cuts the connection right after the client's
// connection.start-ok, exactly as RabbitMQ refuses a wrong password.
func cutAtLogin(c net.Conn, _ int) bool {
	f := fakeBroker{c}
	if f.start() == nil {
		_ = f.expect(11)
	}
	f.reset()
	return true
}

// cutAtOpen accepts the login, tunes, and cuts the connection at
// connection.open.
func cutAtOpen(c net.Conn, _ int) bool {
	f := fakeBroker{c}
	if f.start() == nil && f.expect(11) == nil && f.tune() == nil && f.expect(31) == nil {
		_ = f.expect(40)
	}
	f.reset()
	return true
}

// proxiedBackbone is a backbone connecting through p, with the test's names.
func proxiedBackbone(t *testing.T, n names, p *proxy, configure func(*rabbitmq.Backbone)) *rabbitmq.Backbone {
	t.Helper()
	return newBackbone(t, n, func(b *rabbitmq.Backbone) {
		b.URL = config.Secret("amqp://guest:guest@" + p.addr() + "/")
		if configure != nil {
			configure(b)
		}
	})
}

// startNoConfigError starts b and fails the test on a configuration error.
func startNoConfigError(t *testing.T, b *rabbitmq.Backbone) {
	t.Helper()
	err := b.Start(ctxTimeout(t, 15*time.Second), func(*messages.Envelope) {})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	})
	var ce *plugins.ConfigError
	if errors.As(err, &ce) {
		t.Fatalf("start: %v: a configuration error, which stops the backbone for good", err)
	}
	if err != nil {
		t.Fatalf("start: %v", err)
	}
}

// TestHandshakeStallIsAnOutage: a broker that sends connection.start and
// never answers the login makes the handshake run into dial_timeout. The
// library reports that as refused credentials; it is an outage: Start
// returns nil, Ready says what happened, and the backbone keeps trying.
func TestHandshakeStallIsAnOutage(t *testing.T) {
	p := newProxy(t, nil)
	p.answerWith(stall)
	b := proxiedBackbone(t, names{exchange: "tbtest-unused", suffix: "unused"}, p, func(b *rabbitmq.Backbone) {
		b.DialTimeout = config.Duration(500 * time.Millisecond)
	})
	startNoConfigError(t, b)
	eventually(t, 5*time.Second, "Ready to report the handshake's timeout", func() bool {
		err := b.Ready()
		return err != nil && strings.Contains(err.Error(), "without a reply") && strings.Contains(err.Error(), "timeout")
	})
	eventually(t, 5*time.Second, "more connection attempts", func() bool { return p.connections() >= 3 })
}

// TestHandshakeCutIsAnOutage: a connection cut during the handshake (a load
// balancer, a proxy) is not a refusal, although the library reports it as
// refused credentials or vhost: the backbone connects once the cut is over.
// At the login a cut looks exactly like RabbitMQ's refusal of a password, so
// the backbone logs in a second time before it calls it one.
func TestHandshakeCutIsAnOutage(t *testing.T) {
	for _, c := range []struct {
		name string
		cut  func(net.Conn, int) bool
	}{
		{"at the login", cutAtLogin},
		{"at connection.open", cutAtOpen},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newNames(t)
			p := newProxy(t, nil)
			p.answerWith(func(conn net.Conn, i int) bool { return i == 1 && c.cut(conn, i) })
			b := proxiedBackbone(t, n, p, nil)
			startNoConfigError(t, b)
			eventually(t, 10*time.Second, "both links up", func() bool { return b.Ready() == nil })
		})
	}
	t.Run("twice at the login is a refusal", func(t *testing.T) {
		p := newProxy(t, nil)
		p.answerWith(cutAtLogin)
		b := proxiedBackbone(t, names{exchange: "tbtest-unused", suffix: "unused"}, p, nil)
		err := b.Start(ctxTimeout(t, 10*time.Second), func(*messages.Envelope) {})
		var ce *plugins.ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "access refused") {
			_ = b.Stop(context.Background())
			t.Fatalf("start: %v, want a configuration error about access", err)
		}
		if got := p.connections(); got != 2 {
			t.Fatalf("%d connections, want 2 (a login and its confirmation)", got)
		}
	})
}

// TestVhostConnectionLimitIsAnOutage: RabbitMQ refuses a connection beyond
// its vhost's max-connections with NOT_ALLOWED "access to vhost ...
// refused ...: connection limit (2) is reached". That passes once another
// connection closes: the backbone starts, says why a link is down, and
// connects it when there is room.
func TestVhostConnectionLimitIsAnOutage(t *testing.T) {
	broker(t)
	vhost := randomName("tbtest-vhost-")
	rabbitmqctl(t, "add_vhost", vhost)
	t.Cleanup(func() { rabbitmqctl(t, "delete_vhost", vhost) })
	rabbitmqctl(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	rabbitmqctl(t, "set_vhost_limits", "-p", vhost, `{"max-connections": 2}`)
	u, err := amqp.ParseURI(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Vhost = vhost
	held, err := amqp.DialConfig(u.String(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("the connection to hold: %v", err)
	}
	t.Cleanup(func() { held.Close() })

	b := newBackbone(t, names{exchange: "tbtest-limit", suffix: "limit"}, func(b *rabbitmq.Backbone) {
		b.URL = config.Secret(u.String())
	})
	startNoConfigError(t, b)
	eventually(t, 5*time.Second, "Ready to report the connection limit", func() bool {
		err := b.Ready()
		return err != nil && strings.Contains(err.Error(), "connection limit")
	})
	eventually(t, 5*time.Second, "a retry, refused again", func() bool { return b.Stats().FailedAttempts >= 2 })
	held.Close()
	eventually(t, 10*time.Second, "both links up once there is room", func() bool { return b.Ready() == nil })
}
