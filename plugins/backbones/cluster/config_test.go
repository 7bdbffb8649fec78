package cluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/cluster"
)

func TestSampleConfig(t *testing.T) {
	sample, err := os.ReadFile("sample.conf")
	if err != nil {
		t.Fatal(err)
	}
	r, ok := plugins.Lookup(plugins.KindBackbone, cluster.Name)
	if !ok {
		t.Fatal("cluster backbone not registered")
	}
	if got := r.New().SampleConfig(); got != string(sample) {
		t.Fatal("SampleConfig() is not sample.conf")
	}
	cfg, err := config.Parse("sample.conf", sample, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Backbone.Plugin.(*cluster.Backbone)
	if b.ClusterName != "threatbus" || b.Bind != "127.0.0.1:14001" || b.Provider != "automanaged" || b.Automanaged.Port != 14101 {
		t.Fatalf("sample decoded as %+v", b)
	}
}

// TestTLSRequiredByDefault: TLS is on unless disabled; without its files
// the configuration is refused by Init (so by `threatbus check`), and Start
// refuses with a *plugins.ConfigError without listening.
func TestTLSRequiredByDefault(t *testing.T) {
	port := freePort(t)
	doc := "[backbones.cluster]\nbind = \"127.0.0.1:" + itoa(port) + "\"\n"
	_, err := config.Parse("t.toml", []byte(doc), nil)
	if err == nil || !strings.Contains(err.Error(), "tls.ca_file, tls.cert_file and tls.key_file") {
		t.Fatalf("config without TLS files: %v", err)
	}
	r, _ := plugins.Lookup(plugins.KindBackbone, cluster.Name)
	b := r.New().(*cluster.Backbone)
	b.Bind = "127.0.0.1:" + itoa(port)
	err = b.Start(context.Background(), func(*messages.Envelope) {})
	var ce *plugins.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "tls") {
		t.Fatalf("Start without TLS files: %v (%T), want a *plugins.ConfigError about tls", err, err)
	}
	l, err := net.Listen("tcp", b.Bind)
	if err != nil {
		t.Fatalf("Start listened although it refused: %v", err)
	}
	l.Close()
	if b.Ready() == nil {
		t.Fatal("Ready after a refused Start")
	}
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

func TestInitRefuses(t *testing.T) {
	base := "[backbones.cluster]\n"
	notls := "\n[backbones.cluster.tls]\ndisabled = true\n"
	for _, c := range []struct{ name, doc, want string }{
		{"provider", base + "provider = \"consul\"\n" + notls, "provider \"consul\""},
		{"bind", base + "bind = \"nohost\"\n" + notls, "bind:"},
		{"bind port", base + "bind = \"127.0.0.1:0\"\n" + notls, "a port is required"},
		{"unspecified bind", base + "bind = \"0.0.0.0:14001\"\n" + notls, "set advertise"},
		{"same ports", base + "bind = \"127.0.0.1:14101\"\n" + notls, "must differ"},
		{"no hosts", base + notls + "[backbones.cluster.automanaged]\nhosts = []\n", "automanaged.hosts"},
		{"etcd endpoints", base + "provider = \"etcd\"\n" + notls + "[backbones.cluster.etcd]\nendpoints = []\n", "etcd.endpoints"},
		{"etcd key", base + "provider = \"etcd\"\n" + notls + "[backbones.cluster.etcd]\nbase_key = \"x\"\n", "etcd.base_key"},
		{"buffer", base + "buffer = 0\n" + notls, "buffer 0"},
		{"rejoin", base + "rejoin_after = \"100ms\"\n" + notls, "rejoin_after"},
		{"files and disabled", base + notls + "ca_file = \"/x\"\n", "tls.disabled = true"},
		{"missing file", base + "[backbones.cluster.tls]\nca_file = \"/nonexistent/ca.pem\"\ncert_file = \"/x\"\nkey_file = \"/y\"\n", "tls.ca_file"},
		{"unknown key", base + "bnid = \"127.0.0.1:1\"\n" + notls, "bnid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("t.toml", []byte(c.doc), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// writeCerts writes a CA and a certificate for 127.0.0.1 signed by it.
func writeCerts(t *testing.T) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "threatbus test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	mKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "member"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	mDER, err := x509.CreateCertificate(rand.Reader, mTmpl, caCert, &mKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(mKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("member.pem", "CERTIFICATE", mDER), write("member-key.pem", "EC PRIVATE KEY", keyDER)
}

// TestMutualTLS: two members with mutual TLS relay to each other; a member
// without a certificate from the CA is not let in.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	ca, cert, key := writeCerts(t)
	tlsTable := "[backbones.cluster.tls]\ndisabled = false\nca_file = \"" + ca + "\"\ncert_file = \"" + cert + "\"\nkey_file = \"" + key + "\"\n"
	nodes := loopbackNodes(t, 2)
	name := "tls-" + itoa(int(time.Now().UnixNano()%1e9))
	conf := func(n node) string {
		return strings.Replace(automanagedConf(name, n, nodes), "[backbones.cluster.tls]\ndisabled = true\n", tlsTable, 1)
	}
	a := startProc(t, "member-a", conf(nodes[0]), nil)
	b := startProc(t, "member-b", conf(nodes[1]), nil)
	waitFormed(t, 40*time.Second, a, b)
	want := publishRound(t, []*proc{a, b}, 1, 0, 50)
	waitReceived(t, len(want), a, b)
	checkExactlyOnce(t, a, want)
	checkExactlyOnce(t, b, want)

	// The listener demands a client certificate from the CA: a TLS client
	// without one is refused, one with it completes the handshake.
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(caPEM)
	addr := "127.0.0.1:" + itoa(nodes[0].grpc)
	try := func(certs []tls.Certificate) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{RootCAs: pool, Certificates: certs, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		// TLS 1.3 reports a refused client certificate on the first read.
		if _, err := c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 9))
		return err
	}
	if err := try(nil); err == nil {
		t.Fatal("a client without a certificate was let in")
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := try([]tls.Certificate{pair}); err != nil {
		t.Fatalf("a client with a certificate from the CA was refused: %v", err)
	}
}
