package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/threatbus/threatbus/internal/config"
)

// Defaults of sample.conf.
const (
	DefaultClusterName     = "threatbus"
	DefaultBind            = "127.0.0.1:14001"
	DefaultProvider        = ProviderAutomanaged
	DefaultAutomanagedPort = 14101
	DefaultRefresh         = time.Second
	DefaultEtcdBaseKey     = "/threatbus"
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultBuffer          = 100000
	DefaultBatch           = 256
	DefaultAckTimeout      = 2 * time.Second
	DefaultPingInterval    = 500 * time.Millisecond
	DefaultRejoinAfter     = 5 * time.Second
)

// The membership providers.
const (
	ProviderAutomanaged = "automanaged"
	ProviderEtcd        = "etcd"
)

// Automanaged is the [backbones.cluster.automanaged] table: members find each
// other by polling every host's health endpoint (an HTTP server the provider
// runs on port, on all interfaces).
type Automanaged struct {
	Port  int      `toml:"port"`
	Hosts []string `toml:"hosts"`
	// Refresh is how often the hosts are polled.
	Refresh config.Duration `toml:"refresh"`
}

// Etcd is the [backbones.cluster.etcd] table.
type Etcd struct {
	Endpoints   []string        `toml:"endpoints"`
	BaseKey     string          `toml:"base_key"`
	DialTimeout config.Duration `toml:"dial_timeout"`
}

// TLS is the [backbones.cluster.tls] table: mutual TLS between members.
type TLS struct {
	// Disabled turns TLS off. For loopback tests and private test networks
	// only: anyone who can reach bind can then publish into the bus.
	Disabled bool   `toml:"disabled"`
	CAFile   string `toml:"ca_file"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ServerName overrides the name a peer's certificate must carry (default:
	// the host part of the address dialled).
	ServerName string `toml:"server_name"`
}

// settings is what Init derives from the configuration.
type settings struct {
	bindHost     string
	bindPort     int
	advertise    string // host:port or ""
	refresh      time.Duration
	etcdDial     time.Duration
	ackTimeout   time.Duration
	pingInterval time.Duration
	rejoinAfter  time.Duration
	serverTLS    *tls.Config // nil: plain gRPC
	clientTLS    *tls.Config
}

func newDefaults() *Backbone {
	return &Backbone{
		ClusterName: DefaultClusterName,
		Bind:        DefaultBind,
		Provider:    DefaultProvider,
		Automanaged: Automanaged{
			Port:    DefaultAutomanagedPort,
			Hosts:   []string{"127.0.0.1:14101"},
			Refresh: config.Duration(DefaultRefresh),
		},
		Etcd: Etcd{
			Endpoints:   []string{"127.0.0.1:2379"},
			BaseKey:     DefaultEtcdBaseKey,
			DialTimeout: config.Duration(DefaultEtcdDialTimeout),
		},
		Buffer:       DefaultBuffer,
		Batch:        DefaultBatch,
		AckTimeout:   config.Duration(DefaultAckTimeout),
		PingInterval: config.Duration(DefaultPingInterval),
		RejoinAfter:  config.Duration(DefaultRejoinAfter),
	}
}

// Init implements plugins.Plugin: it validates the configuration and reads
// the TLS files. It does not listen or dial.
func (b *Backbone) Init() error {
	s, err := b.settings()
	if err != nil {
		return fmt.Errorf("%s: %w", Name, err)
	}
	b.cfg = s
	return nil
}

func (b *Backbone) settings() (*settings, error) {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	s := &settings{}

	if b.ClusterName == "" || strings.ContainsAny(b.ClusterName, "/ \t\n") {
		bad("cluster_name %q: want a non-empty name without slashes or spaces", b.ClusterName)
	}
	host, port, err := splitHostPort(b.Bind)
	if err != nil {
		bad("bind: %v", err)
	}
	s.bindHost, s.bindPort = host, port
	if port == 0 && err == nil {
		bad("bind %q: a port is required (peers dial it)", b.Bind)
	}
	if b.Advertise != "" {
		if _, p, err := splitHostPort(b.Advertise); err != nil {
			bad("advertise: %v", err)
		} else if p == 0 {
			bad("advertise %q: a port is required", b.Advertise)
		}
		s.advertise = b.Advertise
	} else if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsUnspecified() {
		bad("bind %q listens on every address: set advertise to the address peers should dial", b.Bind)
	}

	switch b.Provider {
	case ProviderAutomanaged:
		a := b.Automanaged
		if a.Port < 1 || a.Port > 65535 {
			bad("automanaged.port %d: want 1..65535", a.Port)
		}
		if a.Port == port {
			bad("automanaged.port %d: must differ from bind's port", a.Port)
		}
		if len(a.Hosts) == 0 {
			bad("automanaged.hosts: list every member's host:port (this one's included)")
		}
		for _, h := range a.Hosts {
			if _, p, err := splitHostPort(h); err != nil || p == 0 {
				bad("automanaged.hosts: %q: want host:port", h)
			}
		}
		if a.Refresh.D() < 100*time.Millisecond {
			bad("automanaged.refresh %s: want at least 100ms", a.Refresh.D())
		}
		s.refresh = a.Refresh.D()
	case ProviderEtcd:
		e := b.Etcd
		if len(e.Endpoints) == 0 {
			bad("etcd.endpoints: want at least one host:port")
		}
		for _, ep := range e.Endpoints {
			if _, p, err := splitHostPort(strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://")); err != nil || p == 0 {
				bad("etcd.endpoints: %q: want host:port", ep)
			}
		}
		if !strings.HasPrefix(e.BaseKey, "/") {
			bad("etcd.base_key %q: want an absolute key such as /threatbus", e.BaseKey)
		}
		if e.DialTimeout <= 0 {
			bad("etcd.dial_timeout must be positive")
		}
		s.etcdDial = e.DialTimeout.D()
	default:
		bad("provider %q: want %q or %q", b.Provider, ProviderAutomanaged, ProviderEtcd)
	}

	if !b.TLS.Disabled {
		srv, cli, err := b.TLS.configs()
		if err != nil {
			bad("%v", err)
		}
		s.serverTLS, s.clientTLS = srv, cli
	} else if b.TLS.CAFile != "" || b.TLS.CertFile != "" || b.TLS.KeyFile != "" {
		bad("tls: files given but tls.disabled = true: remove one or the other")
	}

	if b.Buffer < 1 {
		bad("buffer %d: must be at least 1", b.Buffer)
	}
	if b.Batch < 1 || b.Batch > 10000 {
		bad("batch %d: want 1..10000", b.Batch)
	}
	if b.AckTimeout.D() < 10*time.Millisecond {
		bad("ack_timeout %s: want at least 10ms", b.AckTimeout.D())
	}
	if b.PingInterval.D() < 10*time.Millisecond {
		bad("ping_interval %s: want at least 10ms", b.PingInterval.D())
	}
	if b.RejoinAfter.D() < 2*b.PingInterval.D() {
		bad("rejoin_after %s: want at least twice ping_interval", b.RejoinAfter.D())
	}
	s.ackTimeout, s.pingInterval, s.rejoinAfter = b.AckTimeout.D(), b.PingInterval.D(), b.RejoinAfter.D()
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return s, nil
}

// configs reads the files now, so that `threatbus check` reports a missing
// or broken one. Both sides verify each other against ca_file.
func (t TLS) configs() (server, client *tls.Config, err error) {
	if t.CAFile == "" || t.CertFile == "" || t.KeyFile == "" {
		return nil, nil, errors.New("tls: mutual TLS between members needs tls.ca_file, tls.cert_file and tls.key_file (or tls.disabled = true on a trusted loopback or test network)")
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("tls.ca_file %s: no PEM certificate in it", t.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.cert_file/key_file: %w", err)
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   t.ServerName,
	}
	return server, client, nil
}

// splitHostPort parses host:port without resolving anything.
func splitHostPort(hp string) (string, int, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %v", hp, err)
	}
	if err := config.CheckHost(host); err != nil {
		return "", 0, fmt.Errorf("%q: %v", hp, err)
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("%q: port %q: want 0..65535", hp, ps)
	}
	return host, p, nil
}
