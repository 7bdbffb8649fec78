package rabbitmq

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/threatbus/threatbus/plugins"
)

// dial opens one connection. link names it ("publisher", "consumer") in
// RabbitMQ's connection list.
func (b *Backbone) dial(ctx context.Context, link string) (*amqp.Connection, error) {
	conn, err := b.handshake(ctx, link)
	if errors.Is(err, errClosedAtLogin) {
		// RabbitMQ refuses a username or password by closing the socket
		// after connection.start-ok without a word (the library does not
		// offer authentication_failure_close, which would make it say so);
		// a load balancer or proxy cutting the connection at that moment
		// looks the same. Only a refusal repeats: log in once more before
		// calling the configuration wrong.
		conn, err = b.handshake(ctx, link)
		if errors.Is(err, errClosedAtLogin) {
			return nil, &plugins.ConfigError{Err: errors.New("access refused: RabbitMQ closed the connection after the login, twice in a row, which is how it refuses a username or password (check username and password, and whether the user may connect from this host)")}
		}
	}
	return conn, err
}

// handshake makes one connection attempt.
func (b *Backbone) handshake(ctx context.Context, link string) (*amqp.Connection, error) {
	s := b.cfg
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(fmt.Sprintf("threatbus %s %s", s.queue, link))
	timeout := b.DialTimeout.D()
	var sock *recordingConn
	cfg := amqp.Config{
		Heartbeat:  b.Heartbeat.D(),
		Properties: props,
		Locale:     "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Covers TLS and the AMQP handshake; the library clears it once
			// the connection is open and heartbeats take over.
			if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
				conn.Close()
				return nil, err
			}
			sock = &recordingConn{Conn: conn}
			return sock, nil
		},
	}
	if s.tls != nil {
		cfg.TLSClientConfig = s.tls.Clone() // the library writes ServerName into it
	}
	url := b.URL.Reveal()
	if url == "" {
		// Credentials and vhost go in the config, not the URL, so that no
		// character in them needs escaping.
		url = s.uri.Scheme + "://" + net.JoinHostPort(s.uri.Host, strconv.Itoa(s.uri.Port)) + "/"
		cfg.SASL = []amqp.Authentication{&amqp.PlainAuth{Username: s.uri.Username, Password: s.uri.Password}}
		cfg.Vhost = s.uri.Vhost
	}
	conn, err := amqp.DialConfig(url, cfg)
	if err != nil {
		var ioErr error
		if sock != nil {
			ioErr = sock.failure()
			// After some failures (no shared SASL mechanism) the library
			// leaves the socket and its reader open.
			sock.Close()
		}
		return nil, classifyDial(err, ioErr)
	}
	return conn, nil
}

// recordingConn is the socket under an AMQP connection; it keeps the first
// error of a read or write. The library reports a socket that failed during
// the login or connection.open, with no reply from the server, as if the
// server had refused the credentials or the vhost: only the socket's own
// error tells a slow or cut connection from a refusal.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	err error
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.record(err)
	}
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.record(err)
	}
	return n, err
}

func (c *recordingConn) record(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// failure returns the socket's first I/O error, nil if there was none.
func (c *recordingConn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// errClosedAtLogin: the server closed the socket right after
// connection.start-ok, without a reply. See dial.
var errClosedAtLogin = errors.New("RabbitMQ closed the connection after the login")

// vhostNotFound is RabbitMQ's reply to connection.open for a vhost that
// does not exist ("NOT_ALLOWED - vhost x not found").
var vhostNotFound = regexp.MustCompile(`(?s)^(?:NOT_ALLOWED - )?vhost .* not found$`)

// classifyDial marks the failures retrying cannot fix as configuration
// errors: refused credentials, a vhost that does not exist, a server
// certificate that does not verify, a server that does not speak TLS.
// ioErr is the socket's first I/O error, if any.
func classifyDial(err, ioErr error) error {
	// These two the library makes up (code 403, as if the server had
	// refused) when the socket failed during the login or connection.open
	// without a reply: our dial_timeout on a slow broker, a cut connection.
	// RabbitMQ explains every refusal of connection.open, and a login it
	// refuses it closes (see dial); anything else is an outage.
	switch {
	case errors.Is(err, amqp.ErrCredentials) && closedByPeer(ioErr):
		return errClosedAtLogin
	case errors.Is(err, amqp.ErrCredentials), errors.Is(err, amqp.ErrVhost):
		step := "login (connection.start-ok)"
		if errors.Is(err, amqp.ErrVhost) {
			step = "connection.open"
		}
		if ioErr == nil {
			return fmt.Errorf("AMQP handshake failed at the %s without a reply from RabbitMQ", step)
		}
		return fmt.Errorf("AMQP handshake failed at the %s without a reply from RabbitMQ: %w", step, ioErr)
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch {
		case ae.Code == amqp.AccessRefused:
			return &plugins.ConfigError{Err: fmt.Errorf("access refused: %s (check username, password and vhost)", ae.Reason)}
		case ae.Code == amqp.NotAllowed && vhostNotFound.MatchString(ae.Reason):
			return &plugins.ConfigError{Err: fmt.Errorf("%s (check vhost)", ae.Reason)}
		}
		// Other NOT_ALLOWED replies to connection.open pass, to be retried:
		// a vhost's or user's connection limit reached ("access to vhost
		// 'x' refused for user 'u': connection limit (2) is reached"), or
		// no permissions on the vhost yet.
		return err
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		return &plugins.ConfigError{Err: fmt.Errorf("TLS: %w (check tls.ca_file and tls.server_name)", err)}
	case errors.As(err, &record):
		return &plugins.ConfigError{Err: fmt.Errorf("TLS: %w (is the port an amqps port?)", err)}
	}
	return err
}

// closedByPeer reports whether err says the other side closed the socket.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// declareExchange declares the shared exchange with the original's flags:
// fanout, not durable, not auto-deleted.
func (b *Backbone) declareExchange(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(b.ExchangeName, amqp.ExchangeFanout, false, false, false, false, nil); err != nil {
		return b.explainDeclare("exchange", b.ExchangeName, err)
	}
	return nil
}

// declareQueue declares this host's queue as configured and binds it to the
// exchange.
func (b *Backbone) declareQueue(ch *amqp.Channel) error {
	q := b.Queue
	if _, err := ch.QueueDeclare(b.cfg.queue, q.Durable, q.AutoDelete, q.Exclusive, false, b.cfg.args); err != nil {
		return b.explainDeclare("queue", b.cfg.queue, err)
	}
	if err := ch.QueueBind(b.cfg.queue, "", b.ExchangeName, false, nil); err != nil {
		return fmt.Errorf("bind queue %q to exchange %q: %w", b.cfg.queue, b.ExchangeName, err)
	}
	return nil
}

var inequivalent = regexp.MustCompile(`inequivalent arg '([^']+)'`)

// explainDeclare turns RabbitMQ's refusal to re-declare an existing
// exchange or queue with other flags (PRECONDITION_FAILED) into one
// configuration error that names the flag, the setting behind it and the way
// out.
func (b *Backbone) explainDeclare(kind, name string, err error) error {
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		return fmt.Errorf("declare %s %q: %w", kind, name, err)
	}
	switch ae.Code {
	case amqp.PreconditionFailed:
	case amqp.AccessRefused:
		return &plugins.ConfigError{Err: fmt.Errorf("declare %s %q: access refused: %s (the user needs configure, write and read permissions on it)", kind, name, ae.Reason)}
	case amqp.ResourceLocked:
		return fmt.Errorf("declare %s %q: %s: another connection holds it exclusively (another bus with the same queue.name_suffix, or this host's previous connection not yet closed)", kind, name, ae.Reason)
	default:
		return fmt.Errorf("declare %s %q: %w", kind, name, err)
	}
	flag, what := "", "settings"
	if m := inequivalent.FindStringSubmatch(ae.Reason); m != nil {
		flag = m[1]
		what = fmt.Sprintf("%q flag", flag)
		if strings.HasPrefix(flag, "x-") {
			what = fmt.Sprintf("%q argument", flag)
		}
	}
	var ours, fix string
	if kind == "exchange" {
		ours = "threatbus declares it as the original Threat Bus does: type fanout, durable false, auto_delete false"
		fix = "delete the exchange so that it is declared anew, or use another exchange_name"
	} else {
		key, value := b.queueSetting(flag)
		ours = fmt.Sprintf("this configuration declares %s (%s)", value, key)
		fix = fmt.Sprintf("change %s to match the existing queue, or delete the queue (rabbitmqctl delete_queue %s) so that it is declared anew", key, name)
	}
	return &plugins.ConfigError{Err: fmt.Errorf("%s %q already exists with a different %s: %s; RabbitMQ says: %s. Either %s",
		kind, name, what, ours, ae.Reason, fix)}
}

// queueSetting names the setting behind a queue flag or argument and what
// this configuration declares for it.
func (b *Backbone) queueSetting(flag string) (key, value string) {
	q := b.Queue
	switch flag {
	case "durable":
		return "queue.durable", fmt.Sprintf("durable %t", q.Durable)
	case "auto_delete":
		return "queue.auto_delete", fmt.Sprintf("auto_delete %t", q.AutoDelete)
	case "exclusive":
		return "queue.exclusive", fmt.Sprintf("exclusive %t", q.Exclusive)
	case "x-queue-mode":
		return "queue.lazy", fmt.Sprintf("x-queue-mode %q", b.cfg.args["x-queue-mode"])
	case "x-max-length":
		if q.MaxItems == 0 {
			return "queue.max_items", "no x-max-length"
		}
		return "queue.max_items", fmt.Sprintf("x-max-length %d", q.MaxItems)
	case "x-dead-letter-exchange":
		if q.DeadLetterExchange == "" {
			return "queue.dead_letter_exchange", "no x-dead-letter-exchange"
		}
		return "queue.dead_letter_exchange", fmt.Sprintf("x-dead-letter-exchange %q", q.DeadLetterExchange)
	}
	return "the queue settings", fmt.Sprintf("arguments %v", b.cfg.args)
}

// consSession is a connected consumer.
type consSession struct {
	conn       *amqp.Connection
	ch         *amqp.Channel
	deliveries <-chan amqp.Delivery
	closed     chan *amqp.Error // the channel's close, which also follows the connection's
}

func (s *consSession) close() {
	_ = s.conn.CloseDeadline(time.Now().Add(time.Second))
}

// openConsumer connects, declares the exchange and the queue, binds them
// and starts consuming.
func (b *Backbone) openConsumer(ctx context.Context) (*consSession, error) {
	conn, err := b.dial(ctx, "consumer")
	if err != nil {
		return nil, err
	}
	s := &consSession{conn: conn}
	fail := func(err error) (*consSession, error) {
		s.close()
		return nil, err
	}
	if s.ch, err = conn.Channel(); err != nil {
		return fail(err)
	}
	if err := b.declareExchange(s.ch); err != nil {
		return fail(err)
	}
	if err := b.declareQueue(s.ch); err != nil {
		return fail(err)
	}
	if err := s.ch.Qos(b.Prefetch, 0, false); err != nil {
		return fail(err)
	}
	s.closed = s.ch.NotifyClose(make(chan *amqp.Error, 1))
	tag := fmt.Sprintf("threatbus-%s-%s", b.cfg.hostname, b.ids.next())
	if s.deliveries, err = s.ch.Consume(b.cfg.queue, tag, false, false, false, false, nil); err != nil {
		return fail(fmt.Errorf("consume from queue %q: %w", b.cfg.queue, err))
	}
	return s, nil
}

// pubSession is a connected publisher.
type pubSession struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	confirms chan amqp.Confirmation // nil without confirms
	closed   chan *amqp.Error
	blocked  chan amqp.Blocking
}

func (s *pubSession) close() {
	_ = s.conn.CloseDeadline(time.Now().Add(time.Second))
}

// confirmWindow caps the messages sent and not yet confirmed on one
// channel: enough to keep RabbitMQ's disk writes batched, small enough that
// a reconnect resends little.
const confirmWindow = 4096

// openPublisher connects, declares the exchange (publishing to a missing
// one would close the channel) and this host's queue (so that what it
// publishes reaches it even before the consumer first connected), and
// enables confirms. An exclusive queue only its owner, the consumer's
// connection, may declare: servePublisher waits for the consumer instead.
func (b *Backbone) openPublisher(ctx context.Context) (*pubSession, error) {
	conn, err := b.dial(ctx, "publisher")
	if err != nil {
		return nil, err
	}
	s := &pubSession{conn: conn}
	fail := func(err error) (*pubSession, error) {
		s.close()
		return nil, err
	}
	if s.ch, err = conn.Channel(); err != nil {
		return fail(err)
	}
	if err := b.declareExchange(s.ch); err != nil {
		return fail(err)
	}
	if !b.Queue.Exclusive {
		if err := b.declareQueue(s.ch); err != nil {
			return fail(err)
		}
	}
	if b.Confirm {
		if err := s.ch.Confirm(false); err != nil {
			return fail(fmt.Errorf("enable publisher confirms: %w", err))
		}
		s.confirms = s.ch.NotifyPublish(make(chan amqp.Confirmation, confirmWindow))
	}
	s.closed = s.ch.NotifyClose(make(chan *amqp.Error, 1))
	s.blocked = conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	return s, nil
}
