package misp

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/plugins"
)

func parse(t *testing.T, name, doc string, env ...string) (*App, error) {
	t.Helper()
	cfg, err := config.Parse(name, []byte(doc), env)
	if err != nil {
		return nil, err
	}
	for _, in := range cfg.Apps {
		if in.Name == Name {
			return in.Plugin.(*App), nil
		}
	}
	t.Fatalf("%s: no [apps.misp]", name)
	return nil, nil
}

// TestSampleConfigLoads: sample.conf is what SampleConfig returns and
// loads through the real loader.
func TestSampleConfigLoads(t *testing.T) {
	data, err := os.ReadFile("sample.conf")
	if err != nil {
		t.Fatal(err)
	}
	if got := New().SampleConfig(); got != string(data) {
		t.Error("SampleConfig() is not sample.conf")
	}
	reg, ok := plugins.Lookup(plugins.KindApp, Name)
	if !ok {
		t.Fatal("misp is not registered")
	}
	if _, ok := reg.New().(*App); !ok {
		t.Fatalf("the registry makes a %T", reg.New())
	}
	if _, err := config.Parse("threatbus config", []byte(config.Sample()), nil); err != nil {
		t.Errorf("the complete sample with this plugin: %v", err)
	}
	app, err := parse(t, "sample.conf", string(data))
	if err != nil {
		t.Fatal(err)
	}
	if app.st.intake != "zmq" || app.st.endpoint != "tcp://localhost:50000" || !app.API.VerifyTLS || !app.Sightings.Enabled {
		t.Errorf("sample: %+v, intake %s %s", app, app.st.intake, app.st.endpoint)
	}
}

// TestREADMEConfigsLoad: every TOML block of README.md with an
// [apps.misp] table loads, so the documentation cannot rot.
func TestREADMEConfigsLoad(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllSubmatch(readme, -1)
	n := 0
	for i, b := range blocks {
		if !bytes.Contains(b[1], []byte("[apps.misp]")) {
			continue
		}
		n++
		if _, err := parse(t, "README.md block "+string(rune('0'+i)), string(b[1])); err != nil {
			t.Errorf("README block %d:\n%s\n%v", i, b[1], err)
		}
	}
	if n == 0 {
		t.Error("README.md has no [apps.misp] example")
	}
}

const minimal = `
[apps.misp.api]
url = "https://misp.example.org/"
key = "k"
[apps.misp.zmq]
host = "misp.example.org"
`

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("  file-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	twoLines := filepath.Join(dir, "two")
	_ = os.WriteFile(twoLines, []byte("a\nb\n"), 0o600)
	notPEM := filepath.Join(dir, "ca.pem")
	_ = os.WriteFile(notPEM, []byte("not a certificate"), 0o600)

	api := func(extra string) string {
		return "[apps.misp.api]\nurl = \"https://misp.example.org\"\n" + extra + "\n"
	}
	withKey := api(`key = "k"`)
	zmq := "[apps.misp.zmq]\nhost = \"127.0.0.1\"\n"
	for _, c := range []struct {
		name, doc string
		want      []string // substrings of the error; none: it loads
	}{
		{"minimal", minimal, nil},
		{"both intakes", withKey + zmq + "[apps.misp.kafka]\nbrokers = [\"k:9092\"]\n", []string{"zmq.host", "kafka.brokers", "not both"}},
		{"no intake", withKey, []string{"no intake", "zmq.host", "kafka.brokers"}},
		{"kafka", withKey + "[apps.misp.kafka]\nbrokers = [\"k:9092\", \"[::1]:9093\"]\n", nil},
		{"no url", "[apps.misp.api]\nkey = \"k\"\n" + zmq, []string{"apps.misp.api.url", "required"}},
		{"bad url", "[apps.misp.api]\nurl = \"misp.example.org\"\nkey = \"k\"\n" + zmq, []string{"api.url", "http"}},
		{"url with credentials", "[apps.misp.api]\nurl = \"https://u:p@misp\"\nkey = \"k\"\n" + zmq, []string{"api.url"}},
		{"no key", api("") + zmq, []string{"api.key or api.key_file"}},
		{"key and key_file", api("key = \"k\"\nkey_file = \""+keyFile+"\"") + zmq, []string{"api.key and api.key_file"}},
		{"key_file", api("key_file = \""+keyFile+"\"") + zmq, nil},
		{"missing key_file", api("key_file = \""+filepath.Join(dir, "nope")+"\"") + zmq, []string{"api.key_file", "no such file"}},
		{"key_file of two lines", api("key_file = \""+twoLines+"\"") + zmq, []string{"more than one line"}},
		{"ca_file without verification", api("key = \"k\"\nverify_tls = false\nca_file = \""+keyFile+"\"") + zmq, []string{"api.ca_file", "verify_tls"}},
		{"ca_file not PEM", api("key = \"k\"\nca_file = \""+notPEM+"\"") + zmq, []string{"api.ca_file", "no PEM"}},
		{"bad zmq host", withKey + "[apps.misp.zmq]\nhost = \"a b\"\n", []string{"zmq.host"}},
		{"bad zmq port", withKey + zmq + "port = 70000\n", []string{"zmq.port"}},
		{"username without password", withKey + zmq + "username = \"u\"\n", []string{"zmq.username and zmq.password"}},
		{"tiny heartbeat_timeout", withKey + zmq + "heartbeat_timeout = \"1ms\"\n", []string{"zmq.heartbeat_timeout"}},
		{"org not an id", withKey + zmq + "[[apps.misp.filter]]\norgs = [\"ORGNAME\"]\n", []string{"filter[0].orgs", "ORGNAME"}},
		{"unmappable type", withKey + zmq + "[[apps.misp.filter]]\ntypes = [\"ip-src\"]\n[[apps.misp.filter]]\ntypes = [\"ip_src\"]\n", []string{"filter[1].types", "ip_src"}},
		{"filters", withKey + zmq + "[[apps.misp.filter]]\norgs = [\"1\"]\ntypes = [\"domain|ip\"]\ntags = [\"tlp:red\"]\n[[apps.misp.filter]]\n", nil},
		{"unknown filter key", withKey + zmq + "[[apps.misp.filter]]\norg = [\"1\"]\n", []string{"apps.misp.filter", "org", "unknown key"}},
		{"unknown key", withKey + zmq + "hots = \"x\"\n", []string{"apps.misp.zmq.hots", "unknown key"}},
		{"bad broker", withKey + "[apps.misp.kafka]\nbrokers = [\"k\"]\n", []string{"kafka.brokers", "host:port"}},
		{"bad offset", withKey + "[apps.misp.kafka]\nbrokers = [\"k:1\"]\noffset = \"middle\"\n", []string{"kafka.offset"}},
		{"no topics", withKey + "[apps.misp.kafka]\nbrokers = [\"k:1\"]\ntopics = []\n", []string{"kafka.topics"}},
		{"sasl without user", withKey + "[apps.misp.kafka]\nbrokers = [\"k:1\"]\nsasl_mechanism = \"PLAIN\"\n", []string{"kafka.sasl_mechanism", "sasl_username"}},
		{"unknown sasl", withKey + "[apps.misp.kafka]\nbrokers = [\"k:1\"]\nsasl_mechanism = \"GSSAPI\"\n", []string{"kafka.sasl_mechanism"}},
		{"kafka ca_file without tls", withKey + "[apps.misp.kafka]\nbrokers = [\"k:1\"]\nca_file = \"" + notPEM + "\"\n", []string{"kafka.ca_file", "tls"}},
		{"queue 0", withKey + zmq + "[apps.misp.sightings]\nqueue = 0\n", []string{"sightings.queue"}},
		{"retries reversed", withKey + zmq + "[apps.misp.sightings]\nretry_min = \"1m\"\nretry_max = \"1s\"\n", []string{"retry_min"}},
		{"page size 0", withKey + zmq + "[apps.misp.snapshot]\npage_size = 0\n", []string{"snapshot.page_size"}},
	} {
		doc := "[apps.misp]\n" + c.doc
		_, err := parse(t, c.name, doc)
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: loaded; want an error with %q", c.name, c.want)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
	}
}

// TestConfigEnvironmentAndSecrets: environment overrides reach the nested
// tables, and `threatbus check` does not print the keys.
func TestConfigEnvironmentAndSecrets(t *testing.T) {
	cfg, err := config.Parse("env", []byte("[apps.misp]\n"+minimal), []string{
		"THREATBUS_APPS_MISP_API_KEY=env-key-42",
		"THREATBUS_APPS_MISP_ZMQ_PORT=50001",
		"THREATBUS_APPS_MISP_ZMQ_PASSWORD=zmq-secret-7",
		"THREATBUS_APPS_MISP_ZMQ_USERNAME=tb",
	})
	if err != nil {
		t.Fatal(err)
	}
	app := cfg.Apps[0].Plugin.(*App)
	if app.st.rest.key != "env-key-42" || app.st.endpoint != "tcp://misp.example.org:50001" {
		t.Errorf("key %q, endpoint %s", app.st.rest.key, app.st.endpoint)
	}
	var out bytes.Buffer
	if err := cfg.Encode(&out); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"env-key-42", "zmq-secret-7"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("check prints the secret %s:\n%s", secret, out.String())
		}
	}
}

// TestRESTTLS: TLS is verified by default; ca_file makes a private CA
// trusted; verify_tls = false skips the check.
func TestRESTTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"Sighting": {"id": "1"}}`))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range []struct {
		name string
		edit func(*App)
		ok   bool
	}{
		{"verified, unknown CA", func(*App) {}, false},
		{"verified with ca_file", func(a *App) { a.API.CAFile = ca }, true},
		{"not verified", func(a *App) { a.API.VerifyTLS = false }, true},
	} {
		app := newTestApp(t, 50000, srv.URL, c.edit)
		err := app.st.addSighting(ctx, []byte(`{}`))
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && !transient(err) {
			t.Errorf("%s: a TLS failure must be retried (MISP's certificate may be fixed): %v", c.name, err)
		}
		if rerr := app.st.rest.ready(); (rerr == nil) != c.ok {
			t.Errorf("%s: REST ready = %v", c.name, rerr)
		}
		app.st.rest.closeIdle()
	}
}

// TestRESTRedirect: a redirect is not followed (the POST would become a
// GET, or the key would go elsewhere); the reason names the new address.
func TestRESTRedirect(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("https://misp.example.org/sightings/add", http.StatusMovedPermanently))
	defer srv.Close()
	app := newTestApp(t, 50000, srv.URL, nil)
	err := app.st.addSighting(context.Background(), []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "https://misp.example.org/sightings/add") || !transient(err) {
		t.Errorf("redirect: %v", err)
	}
	if rerr := app.st.rest.ready(); rerr == nil || !strings.Contains(rerr.Error(), "set api.url") {
		t.Errorf("ready: %v", rerr)
	}
	app.st.rest.closeIdle()
}

func TestRunWithoutInit(t *testing.T) {
	var ce *plugins.ConfigError
	if err := New().Run(context.Background(), nil); !errors.As(err, &ce) {
		t.Errorf("Run before Init: %v", err)
	}
}
