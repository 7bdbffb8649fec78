package misp

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

	"github.com/threatbus/threatbus/internal/config"
)

// validate checks the configuration and builds the REST client. Every
// problem is reported, each naming its key.
func (a *App) validate() (*restClient, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// Intake: exactly one of ZeroMQ and Kafka.
	zmqSet, kafkaSet := a.ZMQ.Host != "", len(a.Kafka.Brokers) > 0
	switch {
	case zmqSet && kafkaSet:
		fail("zmq.host and kafka.brokers are both set: MISP is read from ZeroMQ or from Kafka, not both; remove one")
	case !zmqSet && !kafkaSet:
		fail("no intake: set zmq.host (MISP's ZeroMQ publisher) or kafka.brokers")
	}
	if zmqSet {
		if err := checkHost(a.ZMQ.Host); err != nil {
			fail("zmq.host: %v", err)
		}
		if a.ZMQ.Port < 1 || a.ZMQ.Port > 65535 {
			fail("zmq.port %d: want 1 to 65535", a.ZMQ.Port)
		}
		if (a.ZMQ.Username == "") != (a.ZMQ.Password == "") {
			fail("zmq.username and zmq.password: set both for ZMQ PLAIN authentication, or neither")
		}
		if d := a.ZMQ.HeartbeatTimeout.D(); d != 0 && d < 100*time.Millisecond {
			fail("zmq.heartbeat_timeout %s: want 0 (off) or at least 100ms; MISP heartbeats every 10s when idle", d)
		}
	}
	if kafkaSet {
		a.checkKafka(fail)
	}

	// REST API.
	var rest *restClient
	base, err := checkURL(a.API.URL)
	if err != nil {
		fail("api.url: %v", err)
	}
	key, keyErr := a.apiKey()
	if keyErr != nil {
		errs = append(errs, keyErr)
	}
	var roots *x509.CertPool
	if a.API.CAFile != "" {
		if !a.API.VerifyTLS {
			fail("api.ca_file is set but api.verify_tls = false: the CA would not be used; remove one")
		}
		if roots, err = loadCAs(a.API.CAFile); err != nil {
			fail("api.ca_file: %v", err)
		}
	}
	if a.API.Timeout <= 0 {
		fail("api.timeout must be positive")
	}

	for i, f := range a.Filter {
		for _, o := range f.Orgs {
			if _, err := strconv.ParseUint(o, 10, 64); err != nil {
				fail("filter[%d].orgs: %q is not an organisation id (the number in MISP's Event.orgc_id)", i, o)
			}
		}
		for _, t := range f.Types {
			if !mappableType(t) {
				fail("filter[%d].types: %q is not a MISP attribute type this plugin maps to STIX (see README.md)", i, t)
			}
		}
		for _, t := range f.Tags {
			if strings.TrimSpace(t) == "" {
				fail("filter[%d].tags: empty tag name", i)
			}
		}
	}

	if a.Sightings.Queue < 1 {
		fail("sightings.queue %d: must be at least 1", a.Sightings.Queue)
	}
	if a.Sightings.RetryMin <= 0 || a.Sightings.RetryMax < a.Sightings.RetryMin {
		fail("sightings.retry_min %s and retry_max %s: want 0 < retry_min <= retry_max", a.Sightings.RetryMin.D(), a.Sightings.RetryMax.D())
	}
	if a.Snapshots.PageSize < 1 {
		fail("snapshot.page_size %d: must be at least 1", a.Snapshots.PageSize)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, InsecureSkipVerify: !a.API.VerifyTLS} //nolint:gosec // the operator's explicit choice
	rest = newRESTClient(base, key, tlsConf, a.API.Timeout.D())
	return rest, nil
}

func (a *App) apiKey() (string, error) {
	switch {
	case a.API.Key != "" && a.API.KeyFile != "":
		return "", errors.New("api.key and api.key_file are both set: use one")
	case a.API.Key != "":
		k := strings.TrimSpace(a.API.Key.Reveal())
		if k == "" {
			return "", errors.New("api.key is blank")
		}
		return k, nil
	case a.API.KeyFile != "":
		b, err := os.ReadFile(a.API.KeyFile)
		if err != nil {
			return "", fmt.Errorf("api.key_file: %w", err)
		}
		k := strings.TrimSpace(string(b))
		if k == "" {
			return "", fmt.Errorf("api.key_file %s is empty", a.API.KeyFile)
		}
		if strings.ContainsAny(k, "\r\n") {
			return "", fmt.Errorf("api.key_file %s holds more than one line; it must hold only the key", a.API.KeyFile)
		}
		return k, nil
	}
	return "", errors.New("api.key or api.key_file is required: MISP's REST API takes sightings and answers snapshots")
}

func (a *App) checkKafka(fail func(string, ...any)) {
	k := a.Kafka
	for _, b := range k.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			fail("kafka.brokers: %q: want host:port", b)
			continue
		}
		if err := checkHost(host); err != nil {
			fail("kafka.brokers: %q: %v", b, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			fail("kafka.brokers: %q: port must be 1 to 65535", b)
		}
	}
	if len(k.Topics) == 0 {
		fail("kafka.topics: at least one topic (MISP's default is %q)", DefaultKafkaTopic)
	}
	for _, t := range k.Topics {
		if t == "" {
			fail("kafka.topics: empty topic name")
		}
	}
	if k.Group == "" {
		fail("kafka.group: a consumer group is required")
	}
	switch k.Offset {
	case "earliest", "latest":
	default:
		fail("kafka.offset %q: want \"earliest\" or \"latest\"", k.Offset)
	}
	switch k.SASLMechanism {
	case "":
		if k.SASLUsername != "" || k.SASLPassword != "" {
			fail("kafka.sasl_username/sasl_password are set but kafka.sasl_mechanism is not")
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if k.SASLUsername == "" || k.SASLPassword == "" {
			fail("kafka.sasl_mechanism %s needs kafka.sasl_username and kafka.sasl_password", k.SASLMechanism)
		}
	default:
		fail("kafka.sasl_mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", k.SASLMechanism)
	}
	if k.CAFile != "" {
		if !k.TLS {
			fail("kafka.ca_file is set but kafka.tls = false: set tls = true or remove ca_file")
		}
		if _, err := loadCAs(k.CAFile); err != nil {
			fail("kafka.ca_file: %v", err)
		}
	}
}

// checkURL accepts an http(s) URL with a host and returns it without a
// trailing slash.
func checkURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", fmt.Errorf("%q: want an http:// or https:// URL", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q: no credentials, query or fragment, please: the key goes in api.key", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// checkHost accepts an IP literal or a syntactically valid host name.
func checkHost(h string) error { return config.CheckHost(h) }

func needsBrackets(host string) bool { return strings.Contains(host, ":") }
