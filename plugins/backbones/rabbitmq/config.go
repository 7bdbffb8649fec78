package rabbitmq

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/threatbus/threatbus/internal/config"
)

// Defaults. The connection and queue defaults are the original Threat Bus
// plugin's documented configuration.
const (
	DefaultHost           = "localhost"
	DefaultPort           = 5672
	DefaultUsername       = "guest"
	DefaultPassword       = "guest"
	DefaultVHost          = "/"
	DefaultExchange       = "threatbus"
	DefaultJoinSymbol     = "."
	DefaultPrefetch       = 1000
	DefaultBuffer         = 100000
	DefaultMaxInFlight    = 10000
	DefaultPublishTimeout = 10 * time.Second
	DefaultHeartbeat      = 10 * time.Second
	DefaultDialTimeout    = 10 * time.Second
	DefaultReconnectMin   = 100 * time.Millisecond
	DefaultReconnectMax   = 30 * time.Second
	// DefaultMaxMessageSize is RabbitMQ's default max_message_size since
	// 4.0 (before: 128 MiB), so that a default bus does not send what a
	// default broker refuses.
	DefaultMaxMessageSize = 16 << 20
)

// queuePrefix starts every queue name, as in the original.
const queuePrefix = "threatbus"

// maxMessageSizeLimit is the largest max_message_size RabbitMQ accepts
// (512 MiB).
const maxMessageSizeLimit = 512 << 20

// Queue is the [backbones.rabbitmq.queue] table: how this host's queue is
// named and declared. Keys and defaults are the original's.
type Queue struct {
	// NameJoinSymbol joins "threatbus" and NameSuffix.
	NameJoinSymbol string `toml:"name_join_symbol"`
	// NameSuffix defaults to the host name: "threatbus.<hostname>".
	NameSuffix string `toml:"name_suffix"`
	Durable    bool   `toml:"durable"`
	AutoDelete bool   `toml:"auto_delete"`
	// Lazy declares x-queue-mode "lazy" (else "default").
	Lazy      bool `toml:"lazy"`
	Exclusive bool `toml:"exclusive"`
	// MaxItems > 0 declares x-max-length.
	MaxItems int `toml:"max_items"`
	// DeadLetterExchange, when set, declares x-dead-letter-exchange: rejected
	// (undecodable) messages go there instead of being discarded. Not in the
	// original: a queue shared with a Python bus must leave it empty.
	DeadLetterExchange string `toml:"dead_letter_exchange"`
}

// TLS is the [backbones.rabbitmq.tls] table.
type TLS struct {
	// Enabled makes host/port connections use amqps. A url starting with
	// amqps:// enables TLS by itself.
	Enabled bool `toml:"enabled"`
	// CAFile is a PEM bundle to verify the server with, instead of the
	// system's roots.
	CAFile string `toml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ServerName overrides the name the server's certificate must carry
	// (default: the host connected to).
	ServerName string `toml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
}

// settings is what Init derives from the configuration.
type settings struct {
	uri      amqp.URI    // where to connect, with credentials
	display  string      // uri without the password, for logs and status
	tls      *tls.Config // nil: plain amqp
	queue    string      // the queue's name
	args     amqp.Table  // the queue's arguments
	durable  bool        // publish with delivery_mode 2
	hostname string
}

// newDefaults returns a backbone with the defaults of sample.conf.
func newDefaults() *Backbone {
	return &Backbone{
		Host:         DefaultHost,
		Port:         DefaultPort,
		Username:     DefaultUsername,
		Password:     DefaultPassword,
		VHost:        DefaultVHost,
		ExchangeName: DefaultExchange,
		Queue: Queue{
			NameJoinSymbol: DefaultJoinSymbol,
			Durable:        true,
			Lazy:           true,
		},
		Prefetch:       DefaultPrefetch,
		Confirm:        true,
		Persistent:     true,
		Buffer:         DefaultBuffer,
		MaxInFlight:    DefaultMaxInFlight,
		PublishTimeout: config.Duration(DefaultPublishTimeout),
		MaxMessageSize: DefaultMaxMessageSize,
		Heartbeat:      config.Duration(DefaultHeartbeat),
		DialTimeout:    config.Duration(DefaultDialTimeout),
		ReconnectMin:   config.Duration(DefaultReconnectMin),
		ReconnectMax:   config.Duration(DefaultReconnectMax),
	}
}

// Init implements plugins.Plugin: it validates the configuration, reads the
// TLS files and derives the queue's name and arguments. It does not dial.
func (b *Backbone) Init() error {
	s, err := b.settings()
	if err != nil {
		return err
	}
	b.cfg = s
	if b.out == nil {
		// Made here, before the bus runs, so that Stats may read it from
		// any goroutine; it outlives restarts, keeping what was unconfirmed.
		b.out = newOutbox(b.PublishTimeout.D(), &b.stats.loopbackTimeouts)
	}
	return nil
}

func (b *Backbone) settings() (*settings, error) {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	s := &settings{}
	uri, err := b.uri()
	if err != nil {
		bad("%v", err)
	}
	s.uri = uri
	s.display = redact(uri)

	useTLS := uri.Scheme == "amqps"
	if !useTLS && b.TLS != (TLS{}) {
		bad("tls: options set, but the connection is plain amqp (set tls.enabled = true, or use an amqps:// url)")
	}
	if useTLS {
		t := b.TLS
		// An amqps URL may carry its own TLS options (cacertfile, certfile,
		// keyfile, server_name_indication); the tls table's win.
		if t.CAFile == "" {
			t.CAFile = uri.CACertFile
		}
		if t.CertFile == "" && t.KeyFile == "" {
			t.CertFile, t.KeyFile = uri.CertFile, uri.KeyFile
		}
		if t.ServerName == "" {
			t.ServerName = uri.ServerName
		}
		c, err := t.config()
		if err != nil {
			bad("%v", err)
		}
		s.tls = c
	}

	if b.ExchangeName == "" {
		bad("exchange_name: must not be empty (the default exchange cannot be declared)")
	} else if err := checkName(b.ExchangeName); err != nil {
		bad("exchange_name: %v", err)
	}

	suffix := b.Queue.NameSuffix
	if suffix == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			bad("queue.name_suffix: empty and the host name is unknown (%v): set it", err)
		}
		suffix = h
	}
	s.hostname = suffix
	s.queue = queuePrefix + b.Queue.NameJoinSymbol + suffix
	if err := checkName(s.queue); err != nil {
		bad("queue name %q: %v", s.queue, err)
	}
	mode := "default"
	if b.Queue.Lazy {
		mode = "lazy"
	}
	s.args = amqp.Table{"x-queue-mode": mode}
	switch {
	case b.Queue.MaxItems < 0:
		bad("queue.max_items %d: must not be negative (0 is unbounded)", b.Queue.MaxItems)
	case b.Queue.MaxItems > 0:
		s.args["x-max-length"] = int64(b.Queue.MaxItems)
	}
	if d := b.Queue.DeadLetterExchange; d != "" {
		if err := checkName(d); err != nil {
			bad("queue.dead_letter_exchange: %v", err)
		}
		s.args["x-dead-letter-exchange"] = d
	}
	s.durable = b.Persistent && b.Queue.Durable

	if b.Prefetch < 0 || b.Prefetch > 65535 {
		bad("prefetch %d: want 0 (unlimited) to 65535", b.Prefetch)
	}
	if b.Buffer < 1 {
		bad("buffer %d: must be at least 1", b.Buffer)
	}
	if b.MaxInFlight < 0 {
		bad("max_in_flight %d: must not be negative", b.MaxInFlight)
	}
	if b.PublishTimeout <= 0 {
		bad("publish_timeout must be positive")
	}
	if b.MaxMessageSize < 1 || b.MaxMessageSize > maxMessageSizeLimit {
		bad("max_message_size %d: want 1 to %d bytes (RabbitMQ's own limit, 512 MiB), at most the broker's max_message_size", b.MaxMessageSize, maxMessageSizeLimit)
	}
	if b.DialTimeout <= 0 {
		bad("dial_timeout must be positive")
	}
	if b.Heartbeat.D() < time.Second {
		bad("heartbeat %s: want at least 1s", b.Heartbeat.D())
	}
	if b.ReconnectMin <= 0 || b.ReconnectMax < b.ReconnectMin {
		bad("want 0 < reconnect_min <= reconnect_max, got %s and %s", b.ReconnectMin.D(), b.ReconnectMax.D())
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return s, nil
}

// uri builds the broker's address from url or from host, port, username,
// password and vhost, which are its alternative.
func (b *Backbone) uri() (amqp.URI, error) {
	if b.URL == "" {
		if b.Host == "" {
			return amqp.URI{}, errors.New("host: must not be empty")
		}
		if b.Port < 1 || b.Port > 65535 {
			return amqp.URI{}, fmt.Errorf("port %d: want 1..65535", b.Port)
		}
		scheme := "amqp"
		if b.TLS.Enabled {
			scheme = "amqps"
		}
		return amqp.URI{
			Scheme:   scheme,
			Host:     b.Host,
			Port:     b.Port,
			Username: b.Username,
			Password: b.Password.Reveal(),
			Vhost:    b.VHost,
		}, nil
	}
	d := newDefaults()
	if b.Host != d.Host || b.Port != d.Port || b.Username != d.Username || b.Password != d.Password || b.VHost != d.VHost {
		return amqp.URI{}, errors.New("url: set either url or host/port/username/password/vhost, not both")
	}
	u, err := amqp.ParseURI(b.URL.Reveal())
	if err != nil {
		// The library's message may quote the URL, password and all.
		return amqp.URI{}, fmt.Errorf("url: not an amqp:// or amqps:// URL (%s)", strings.ReplaceAll(err.Error(), b.URL.Reveal(), "<redacted>"))
	}
	if b.TLS.Enabled && u.Scheme != "amqps" {
		return amqp.URI{}, errors.New("tls.enabled = true, but url is amqp://: use amqps://")
	}
	return u, nil
}

// config builds the TLS client configuration, reading the files now so that
// `threatbus check` reports a missing or broken one.
func (t TLS) config() (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // an explicit, documented test option
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate in it", t.CAFile)
		}
		c.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	case t.CertFile != "" || t.KeyFile != "":
		return nil, errors.New("tls: cert_file and key_file go together")
	}
	return c, nil
}

// checkName checks an exchange or queue name: RabbitMQ takes up to 255
// bytes of UTF-8.
func checkName(n string) error {
	if len(n) > 255 {
		return fmt.Errorf("%d bytes long, RabbitMQ allows 255", len(n))
	}
	if !utf8.ValidString(n) {
		return errors.New("not valid UTF-8")
	}
	return nil
}

// redact renders uri without its password.
func redact(uri amqp.URI) string {
	u := url.URL{Scheme: uri.Scheme, Host: net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))}
	u.RawPath = "/" + url.PathEscape(uri.Vhost)
	u.Path = "/" + uri.Vhost
	if uri.Username != "" {
		u.User = url.User(uri.Username)
	}
	return u.String()
}
