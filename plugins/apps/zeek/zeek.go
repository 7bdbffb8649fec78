// Package zeek is the Zeek app plugin: it dials the WebSocket API of each
// configured Zeek (Zeek ≥ 5; Cluster::listen_websocket from 7.2) and speaks
// the Threat Bus event protocol over it. A Zeek subscribes with
// Tenzir::subscribe and gets its own p2p topic and bus subscription;
// indicators on that subscription that are point IoCs become Tenzir::intel
// events for the Zeek Intel framework; Tenzir::sighting events become STIX
// Sightings on the bus. threatbus.zeek, next to this file, is the script
// that runs on the Zeek side.
//
// The bus is the WebSocket client (Zeek cannot dial out), one connection
// per Zeek, reconnecting with backoff; what a Zeek subscribed to lives as
// long as its connection. The plugin must not answer one Zeek's management
// events to another (the original broadcast them), must not re-encode STIX
// objects it forwards, and must not let a malformed message from Zeek end
// a connection: it counts and logs it instead. The Broker JSON codec is in
// package brokerjson.
package zeek

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/plugins"
)

//go:embed sample.conf
var sampleConfig string

// Name is the plugin's registry key and config table name.
const Name = "zeek"

func init() {
	plugins.AddApp(Name, func() plugins.App { return New() })
}

// The protocol's fixed parts.
const (
	// DefaultPath is what Zeek serves the WebSocket API on.
	DefaultPath = "/v1/messages/json"
	// ManagementTopic carries subscribe, unsubscribe and acknowledgements.
	ManagementTopic = "threatbus/manage"
	// SightingTopic carries sightings from Zeek.
	SightingTopic = "stix2/sighting"
	// p2pSuffixLength is the number of random letters of a p2p topic.
	p2pSuffixLength = 10
)

// Defaults.
const (
	DefaultNamespace       = "Tenzir"
	DefaultSource          = "zeek"
	DefaultApplicationName = "threatbus"
	DefaultConnectTimeout  = 10 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultPingInterval    = 20 * time.Second
	DefaultReconnectMin    = time.Second
	DefaultReconnectMax    = 30 * time.Second
	DefaultMaxMessageSize  = 1 << 20
	DefaultStatsInterval   = time.Minute
)

// App is the Zeek app plugin and its configuration: the [apps.zeek] table
// (see sample.conf).
type App struct {
	// Endpoints are the Zeek WebSocket servers to dial: ws://host:port or
	// wss://host:port, with /v1/messages/json implied when there is no path.
	Endpoints []string `toml:"endpoints" required:"true"`
	// ModuleNamespace is the Zeek module of the events ("Tenzir::intel");
	// "" for global events.
	ModuleNamespace string `toml:"module_namespace"`
	// Source is the x_threatbus_source of sightings; "" leaves it out.
	Source string `toml:"source"`
	// ApplicationName is sent as X-Application-Name (Zeek logs and labels
	// the client with it); "" sends no header.
	ApplicationName string `toml:"application_name"`
	// CAFile verifies wss:// servers (PEM; the system pool when empty).
	CAFile string `toml:"ca_file"`
	// CertFile and KeyFile are a client certificate for wss:// servers that
	// ask for one.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ServerName overrides the name a wss:// server's certificate must
	// carry (by default the endpoint's host).
	ServerName string `toml:"server_name"`
	// ConnectTimeout bounds dialing plus the handshake (the topic list out,
	// the ack back).
	ConnectTimeout config.Duration `toml:"connect_timeout"`
	// WriteTimeout bounds one message to Zeek; a Zeek that takes longer is
	// disconnected and dialed again.
	WriteTimeout config.Duration `toml:"write_timeout"`
	// PingInterval is how often an idle connection is checked with a
	// WebSocket ping (a missing pong within the interval drops it); 0
	// turns pings off.
	PingInterval config.Duration `toml:"ping_interval"`
	// ReconnectMin and ReconnectMax bound the wait before dialing again; it
	// doubles with every failure, with jitter.
	ReconnectMin config.Duration `toml:"reconnect_min"`
	ReconnectMax config.Duration `toml:"reconnect_max"`
	// MaxMessageSize is the largest message accepted from Zeek, in bytes.
	MaxMessageSize int `toml:"max_message_size"`
	// StatsInterval is how often the counters are logged when they
	// changed; 0 never.
	StatsInterval config.Duration `toml:"stats_interval"`

	st *state
}

// New returns an App with the default configuration and no endpoints.
func New() *App {
	return &App{
		ModuleNamespace: DefaultNamespace,
		Source:          DefaultSource,
		ApplicationName: DefaultApplicationName,
		ConnectTimeout:  config.Duration(DefaultConnectTimeout),
		WriteTimeout:    config.Duration(DefaultWriteTimeout),
		PingInterval:    config.Duration(DefaultPingInterval),
		ReconnectMin:    config.Duration(DefaultReconnectMin),
		ReconnectMax:    config.Duration(DefaultReconnectMax),
		MaxMessageSize:  DefaultMaxMessageSize,
		StatsInterval:   config.Duration(DefaultStatsInterval),
	}
}

var _ interface {
	plugins.App
	plugins.Checker
} = (*App)(nil)

// SampleConfig implements plugins.Plugin.
func (*App) SampleConfig() string { return sampleConfig }

var (
	identRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	appNameRE = regexp.MustCompile(`^[-/_.=:*@a-zA-Z0-9]+$`) // what Zeek accepts
)

// Init implements plugins.Plugin: it checks the configuration and reads
// the TLS files, but dials nothing.
func (a *App) Init() error {
	var errs []error
	if len(a.Endpoints) == 0 {
		errs = append(errs, errors.New(`endpoints is empty: list the Zeek WebSocket servers, e.g. ["ws://zeek-1:27759"]`))
	}
	urls := make([]string, 0, len(a.Endpoints))
	seen := map[string]bool{}
	tlsUsed := false
	for _, e := range a.Endpoints {
		u, err := normalizeEndpoint(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[u] {
			errs = append(errs, fmt.Errorf("endpoint %s is listed twice", u))
			continue
		}
		seen[u] = true
		tlsUsed = tlsUsed || strings.HasPrefix(u, "wss://")
		urls = append(urls, u)
	}
	if a.ModuleNamespace != "" && !identRE.MatchString(a.ModuleNamespace) {
		errs = append(errs, fmt.Errorf("module_namespace %q: want a Zeek module name (letters, digits, _) or \"\"", a.ModuleNamespace))
	}
	if a.ApplicationName != "" && !appNameRE.MatchString(a.ApplicationName) {
		errs = append(errs, fmt.Errorf("application_name %q: Zeek refuses names outside [-/_.=:*@a-zA-Z0-9]+", a.ApplicationName))
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		errs = append(errs, errors.New("cert_file and key_file go together: set both or neither"))
	}
	if !tlsUsed && (a.CAFile != "" || a.CertFile != "" || a.KeyFile != "" || a.ServerName != "") {
		errs = append(errs, errors.New("ca_file, cert_file, key_file or server_name set, but no endpoint uses wss://"))
	}
	for _, d := range []struct {
		name string
		v    config.Duration
		zero bool // 0 allowed
	}{
		{"connect_timeout", a.ConnectTimeout, false},
		{"write_timeout", a.WriteTimeout, false},
		{"ping_interval", a.PingInterval, true},
		{"reconnect_min", a.ReconnectMin, false},
		{"reconnect_max", a.ReconnectMax, false},
		{"stats_interval", a.StatsInterval, true},
	} {
		if d.v == 0 && !d.zero {
			errs = append(errs, fmt.Errorf("%s must be positive", d.name))
		}
	}
	if a.ReconnectMax < a.ReconnectMin {
		errs = append(errs, fmt.Errorf("reconnect_max %s is less than reconnect_min %s", a.ReconnectMax.D(), a.ReconnectMin.D()))
	}
	if p := a.PingInterval.D(); p != 0 && p < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("ping_interval %s: want 0 (off) or at least 100ms", p))
	}
	if a.MaxMessageSize < 4096 {
		errs = append(errs, fmt.Errorf("max_message_size %d: want at least 4096 bytes", a.MaxMessageSize))
	}
	if len(errs) == 0 && tlsUsed {
		if _, err := a.tlsConfig(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("zeek: %w", err)
	}
	a.st = newState(a, urls)
	return nil
}

// normalizeEndpoint checks an endpoint and adds the API path when the URL
// has none.
func normalizeEndpoint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %v", raw, err)
	}
	// Scheme and host name are case-insensitive: lower them so that one Zeek
	// listed twice is caught, not dialled twice (every sighting twice).
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	switch {
	case u.Scheme != "ws" && u.Scheme != "wss":
		return "", fmt.Errorf("endpoint %q: want ws://host:port or wss://host:port", raw)
	case u.User != nil:
		return "", fmt.Errorf("endpoint %q: credentials in the URL are not supported; use cert_file and key_file", raw)
	case u.Fragment != "" || u.RawQuery != "":
		return "", fmt.Errorf("endpoint %q: no query or fragment, please", raw)
	case u.Hostname() == "":
		return "", fmt.Errorf("endpoint %q: no host", raw)
	case u.Port() == "":
		return "", fmt.Errorf("endpoint %q: no port (Zeek's WebSocket port is usually 27759)", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = DefaultPath
	}
	return u.String(), nil
}

// tlsConfig reads the TLS files. It runs at Init, to report bad files
// early, and before every Run, so that renewed certificates are used.
func (a *App) tlsConfig() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: a.ServerName}
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", a.CAFile)
		}
	}
	if a.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// httpClient is the client every endpoint dials with: the default
// transport (proxy settings included) with our TLS configuration.
func (a *App) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tc, err := a.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("zeek: %w", err)
	}
	tr.TLSClientConfig = tc
	tr.DialContext = (&net.Dialer{Timeout: a.ConnectTimeout.D(), KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: tr}, nil
}

// Ready implements plugins.Checker: nil when every endpoint is connected,
// otherwise which are not and why.
func (a *App) Ready() error {
	st := a.st
	if st == nil {
		return errors.New("zeek: not initialized")
	}
	var down []string
	for _, e := range st.endpoints {
		if !e.connected.Load() {
			down = append(down, e.url+": "+e.lastError())
		}
	}
	if len(down) == 0 {
		return nil
	}
	return fmt.Errorf("zeek: %d of %d endpoints not connected: %s", len(down), len(st.endpoints), strings.Join(down, "; "))
}

// Run implements plugins.App: it keeps a connection to every endpoint until
// ctx ends. Connection failures are retried forever with backoff, so Run
// returns an error only when the TLS files cannot be read or a bug
// panicked. What the Zeeks subscribed to ends with their connections, and
// so with Run: they subscribe again when the bus reconnects.
func (a *App) Run(ctx context.Context, bus plugins.Bus) error {
	st := a.st
	if st == nil {
		return errors.New("zeek: Run before Init")
	}
	select {
	case st.running <- struct{}{}:
		defer func() { <-st.running }()
	case <-ctx.Done():
		return nil // an earlier Run has not let go yet, and we are asked to stop
	}
	log := bus.Logger()
	client, err := a.httpClient()
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(st.endpoints))
	var wg sync.WaitGroup
	for _, e := range st.endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					log.Error("zeek: endpoint loop panicked", "endpoint", e.url, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					errc <- fmt.Errorf("zeek: %s: panic: %v", e.url, r)
					cancel()
				}
			}()
			e.run(runCtx, bus, log, client)
		}()
	}
	log.Info("zeek app started", "endpoints", len(st.endpoints))
	if every := a.StatsInterval.D(); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
	loop:
		for {
			select {
			case <-t.C:
				st.logStats(log, false)
			case <-runCtx.Done():
				break loop
			}
		}
	} else {
		<-runCtx.Done()
	}
	wg.Wait()
	st.logStats(log, true)
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
