package rabbitmq_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	_ "github.com/threatbus/threatbus/plugins/backbones/inmem" // the default, which the full sample enables
	"github.com/threatbus/threatbus/plugins/backbones/rabbitmq"
)

func parse(t *testing.T, doc string, env ...string) (*rabbitmq.Backbone, error) {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(doc), env)
	if err != nil {
		return nil, err
	}
	b, ok := cfg.Backbone.Plugin.(*rabbitmq.Backbone)
	if !ok {
		t.Fatalf("backbone is %T", cfg.Backbone.Plugin)
	}
	return b, nil
}

// TestSampleConfig loads sample.conf through the real loader: it must parse,
// be what SampleConfig returns, and state exactly the defaults.
func TestSampleConfig(t *testing.T) {
	sample, err := os.ReadFile("sample.conf")
	if err != nil {
		t.Fatal(err)
	}
	if got := rabbitmq.New().SampleConfig(); got != string(sample) {
		t.Fatal("SampleConfig() is not sample.conf")
	}
	b, err := parse(t, string(sample))
	if err != nil {
		t.Fatalf("sample.conf: %v", err)
	}
	def := rabbitmq.New()
	if err := def.Init(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(exported(b), exported(def)) {
		t.Fatalf("sample.conf differs from the defaults:\nsample   %+v\ndefaults %+v", exported(b), exported(def))
	}
	host, _ := os.Hostname()
	if got := b.QueueName(); got != "threatbus."+host {
		t.Fatalf("queue name %q, want threatbus.%s", got, host)
	}
	// An empty table is the same configuration.
	if b2, err := parse(t, "[backbones.rabbitmq]\n"); err != nil || !reflect.DeepEqual(exported(b2), exported(def)) {
		t.Fatalf("empty table: %v", err)
	}
}

// exported copies the configuration fields only.
func exported(b *rabbitmq.Backbone) map[string]any {
	out := map[string]any{}
	v := reflect.ValueOf(b).Elem()
	for i := 0; i < v.NumField(); i++ {
		if f := v.Type().Field(i); f.IsExported() {
			out[f.Name] = v.Field(i).Interface()
		}
	}
	return out
}

func TestConfigKeysAndOverrides(t *testing.T) {
	b, err := parse(t, `
[backbones.rabbitmq]
host = "rabbit.example"
port = 5673
username = "tb"
password = "s3cret"
vhost = "intel"
exchange_name = "shared"
prefetch = 10
[backbones.rabbitmq.queue]
name_join_symbol = "-"
name_suffix = "hostA"
durable = false
lazy = false
max_items = 500
`, "THREATBUS_BACKBONES_RABBITMQ_QUEUE_NAME_SUFFIX=fromenv", "THREATBUS_BACKBONES_RABBITMQ_MAX_IN_FLIGHT=100")
	if err != nil {
		t.Fatal(err)
	}
	if b.QueueName() != "threatbus-fromenv" || b.MaxInFlight != 100 || b.Port != 5673 || b.Queue.MaxItems != 500 || b.Queue.Durable {
		t.Fatalf("decoded %+v", exported(b))
	}
	if _, err := parse(t, "[backbones.rabbitmq]\nqueue_name = \"x\"\n"); err == nil || !strings.Contains(err.Error(), "queue_name") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := parse(t, "[backbones.rabbitmq.queue]\nlazzy = true\n"); err == nil || !strings.Contains(err.Error(), "lazzy") {
		t.Fatalf("unknown queue key: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ doc, want string }{
		{`url = "amqp://u:p@h/"` + "\nhost = \"other\"", "either url or host"},
		{`url = "http://u:hunter2@h/"`, "not an amqp:// or amqps:// URL"},
		{`url = "amqp://u:p@h/"` + "\n[backbones.rabbitmq.tls]\nca_file = \"x\"", "connection is plain amqp"},
		{`url = "amqp://u:p@h/"` + "\n[backbones.rabbitmq.tls]\nenabled = true", "use amqps://"},
		{"[backbones.rabbitmq.tls]\nenabled = true\ncert_file = \"c.pem\"", "cert_file and key_file go together"},
		{"[backbones.rabbitmq.tls]\nenabled = true\nca_file = \"/nonexistent/ca.pem\"", "tls.ca_file"},
		{"[backbones.rabbitmq.tls]\nenabled = true\nca_file = \"" + notPEM + "\"", "no PEM certificate"},
		{`exchange_name = ""`, "exchange_name: must not be empty"},
		{`exchange_name = "` + strings.Repeat("x", 256) + `"`, "RabbitMQ allows 255"},
		{"[backbones.rabbitmq.queue]\nname_suffix = \"" + strings.Repeat("x", 250) + "\"", "RabbitMQ allows 255"},
		{"[backbones.rabbitmq.queue]\nmax_items = -1", "max_items -1"},
		{`prefetch = 70000`, "prefetch 70000"},
		{`buffer = 0`, "buffer 0"},
		{`max_in_flight = -1`, "max_in_flight -1"},
		{`publish_timeout = "0s"`, "publish_timeout must be positive"},
		{`max_message_size = 0`, "max_message_size 0: want 1 to 536870912 bytes"},
		{`max_message_size = 536870913`, "max_message_size 536870913: want 1 to 536870912 bytes"},
		{`heartbeat = "500ms"`, "heartbeat 500ms"},
		{"reconnect_min = \"10s\"\nreconnect_max = \"1s\"", "reconnect_min <= reconnect_max"},
		{`port = 0`, "port 0"},
		{`host = ""`, "host: must not be empty"},
	} {
		_, err := parse(t, "[backbones.rabbitmq]\n"+c.doc+"\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s\n  got  %v\n  want %q", c.doc, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

// TestSecretsHidden: `threatbus check` prints the configuration; neither
// the password nor a url carrying one may appear.
func TestSecretsHidden(t *testing.T) {
	for _, doc := range []string{
		"[backbones.rabbitmq]\npassword = \"hunter2\"\n",
		"[backbones.rabbitmq]\nurl = \"amqp://tb:hunter2@rabbit/intel\"\n",
	} {
		cfg, err := config.Parse("test.toml", []byte(doc), nil)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := cfg.Encode(&out); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "hunter2") {
			t.Fatalf("check output shows the password:\n%s", out.String())
		}
		b := cfg.Backbone.Plugin.(*rabbitmq.Backbone)
		if err := b.Ready(); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("Ready before Start: %v", err)
		}
	}
}

// writeCA makes a CA and a certificate it signed for the given IP and DNS
// names, and writes them as PEM files: ca.pem, <name>.pem, <name>-key.pem.
type testPKI struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "threatbus test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), caCert: cert, caKey: key}
	writePEM(t, filepath.Join(p.dir, "ca.pem"), "CERTIFICATE", der)
	return p
}

func (p *testPKI) ca() string { return filepath.Join(p.dir, "ca.pem") }

// issue writes name.pem and name-key.pem, a leaf for ips and client auth.
func (p *testPKI) issue(t *testing.T, name string, ips ...net.IP) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTLSConfigLoads(t *testing.T) {
	p := newPKI(t)
	cert, key := p.issue(t, "client")
	b, err := parse(t, "[backbones.rabbitmq]\nport = 5671\n[backbones.rabbitmq.tls]\nenabled = true\nca_file = \""+p.ca()+
		"\"\ncert_file = \""+cert+"\"\nkey_file = \""+key+"\"\nserver_name = \"rabbit\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if !b.TLS.Enabled {
		t.Fatal("tls not enabled")
	}
	// A key that does not match the certificate is found before starting.
	_, otherKey := p.issue(t, "other")
	if _, err := parse(t, "[backbones.rabbitmq.tls]\nenabled = true\ncert_file = \""+cert+"\"\nkey_file = \""+otherKey+"\"\n"); err == nil || !strings.Contains(err.Error(), "cert_file/key_file") {
		t.Fatalf("mismatched key: %v", err)
	}
	// The url's own TLS options count too.
	if _, err := parse(t, "[backbones.rabbitmq]\nurl = \"amqps://u:p@h:5671/?cacertfile=/nonexistent.pem\"\n"); err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
		t.Fatalf("url cacertfile: %v", err)
	}
}

// TestFullSample is internal/config's shipped-config test as it will run
// once plugins/all links this plugin: `threatbus config` prints every
// plugin's sample (this one commented out, as a backbone other than the
// default), and that must load.
func TestFullSample(t *testing.T) {
	sample := config.Sample()
	if !strings.Contains(sample, "# [backbones.rabbitmq]") {
		t.Fatalf("the full sample does not carry this plugin's, commented out:\n%s", sample)
	}
	if _, err := config.Parse("sample", []byte(sample), nil); err != nil {
		t.Fatal(err)
	}
	// Uncommented, it is a valid configuration on its own.
	own, err := os.ReadFile("sample.conf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse("sample.conf", own, nil); err != nil {
		t.Fatal(err)
	}
}
