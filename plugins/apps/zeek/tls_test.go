package zeek

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threatbus/threatbus/plugins/apps/zeek/zeektest"
	"github.com/threatbus/threatbus/tests/bustest"
)

// pki is a test CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
type pki struct {
	caFile, certFile, keyFile string // the client's
	pool                      *x509.CertPool
	server                    tls.Certificate
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	serverDER, serverKey := issue(2, &x509.Certificate{Subject: pkix.Name{CommonName: "zeek"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	clientDER, clientKey := issue(3, &x509.Certificate{Subject: pkix.Name{CommonName: "threatbus"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	write := func(file, typ string, der []byte) string {
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p := &pki{
		caFile:   write("ca.pem", "CERTIFICATE", caDER),
		certFile: write("client.pem", "CERTIFICATE", clientDER),
		keyFile:  write("client-key.pem", "EC PRIVATE KEY", keyDER(clientKey)),
		pool:     x509.NewCertPool(),
		server:   tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey},
	}
	p.pool.AddCert(ca)
	return p
}

// TestTLS: wss with a private CA and a client certificate (mutual TLS, as
// the script sets up with websocket_client_ca_file).
func TestTLS(t *testing.T) {
	p := newPKI(t, "test")
	z := fakeZeek(t, zeektest.Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool,
	}})
	if !strings.HasPrefix(z.URL(), "wss://") {
		t.Fatalf("URL %s", z.URL())
	}
	e := start(t, setup{endpoints: []string{z.URL()}, app: func(a *App) {
		a.CAFile, a.CertFile, a.KeyFile = p.caFile, p.certFile, p.keyFile
		a.ApplicationName = "" // no header
	}, noWait: true})
	e.waitSubscribed(t, z, "")
	ind := indicator(t, "[ipv4-addr:value = '203.0.113.9']")
	e.publish(t, ind.Raw)
	if got := waitIntel(t, z, ind.ID); got.Indicator != "203.0.113.9" || got.Type != "ADDR" {
		t.Errorf("got %+v", got)
	}
	if h := z.Headers(); len(h) != 1 || h[0].Get("X-Application-Name") != "" {
		t.Errorf("headers %v", h)
	}
}

// TestTLSRefused: a server the CA did not sign, or a missing client
// certificate, keep the endpoint down with the reason in Ready.
func TestTLSRefused(t *testing.T) {
	p, other := newPKI(t, "test"), newPKI(t, "other")
	z := fakeZeek(t, zeektest.Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool,
	}})
	for name, c := range map[string]struct {
		configure func(*App)
		want      string
	}{
		"wrong CA":       {func(a *App) { a.CAFile, a.CertFile, a.KeyFile = other.caFile, p.certFile, p.keyFile }, "certificate signed by unknown authority"},
		"no client cert": {func(a *App) { a.CAFile = p.caFile }, "certificate required"},
		"wrong server name": {func(a *App) {
			a.CAFile, a.CertFile, a.KeyFile, a.ServerName = p.caFile, p.certFile, p.keyFile, "zeek.example"
		}, "zeek.example"},
	} {
		t.Run(name, func(t *testing.T) {
			e := start(t, setup{endpoints: []string{z.URL()}, app: c.configure, noWait: true})
			bustest.Eventually(t, "a refused dial", func() bool {
				err := e.app.Ready()
				return err != nil && strings.Contains(err.Error(), c.want)
			})
			if st := e.endpointStats(t, z); st.Connects != 0 {
				t.Errorf("connected: %+v", st)
			}
		})
	}
}
