package zeek

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/threatbus/threatbus/internal/config"
)

func parse(t *testing.T, doc string, environ ...string) (*App, error) {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(doc), environ)
	if err != nil {
		return nil, err
	}
	for _, a := range cfg.Apps {
		if a.Name == Name {
			return a.Plugin.(*App), nil
		}
	}
	t.Fatalf("no zeek app in %s", doc)
	return nil, nil
}

// TestSampleConfig: sample.conf loads through the real loader, and what it
// documents is what New sets.
func TestSampleConfig(t *testing.T) {
	app, err := parse(t, sampleConfig)
	if err != nil {
		t.Fatalf("sample.conf: %v", err)
	}
	if !reflect.DeepEqual(app.Endpoints, []string{"ws://127.0.0.1:27759"}) {
		t.Errorf("endpoints %v", app.Endpoints)
	}
	want := New()
	want.Endpoints = app.Endpoints
	app.st, want.st = nil, nil
	if !reflect.DeepEqual(app, want) {
		t.Errorf("sample.conf and New disagree:\nsample %+v\n   New %+v", app, want)
	}
	// Every key of the table is documented in the sample.
	for _, f := range reflect.VisibleFields(reflect.TypeFor[App]()) {
		if tag := f.Tag.Get("toml"); tag != "" && !strings.Contains(sampleConfig, "\n"+tag+" = ") {
			t.Errorf("sample.conf does not document %s", tag)
		}
	}
	// The complete sample that `threatbus config` prints loads too.
	if _, err := config.Parse("sample", []byte(config.Sample()), nil); err != nil {
		t.Errorf("config.Sample(): %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		doc, want string
	}{
		{"[apps.zeek]", "apps.zeek.endpoints: required value is missing"},
		{"[apps.zeek]\nendpoints = []", "endpoints is empty"},
		{"[apps.zeek]\nendpoints = \"ws://a:1\"", "endpoints"},
		{"[apps.zeek]\nendpoints = [\"http://a:1\"]", "want ws://host:port or wss://host:port"},
		{"[apps.zeek]\nendpoints = [\"zeek-1:27759\"]", "want ws://host:port"},
		{"[apps.zeek]\nendpoints = [\"ws://zeek-1\"]", "no port"},
		{"[apps.zeek]\nendpoints = [\"ws://:27759\"]", "no host"},
		{"[apps.zeek]\nendpoints = [\"ws://u:p@a:1\"]", "credentials"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1?x=y\"]", "no query"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1\", \"ws://a:1/v1/messages/json\"]", "listed twice"},
		{"[apps.zeek]\nendpoints = [\"ws://zeek-1:1\", \"WS://ZEEK-1:1\"]", "listed twice"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1\"]\nmodule_namespace = \"Ten zir\"", "module_namespace"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1\"]\napplication_name = \"thread bus\"", "application_name"},
		{"[apps.zeek]\nendpoints = [\"wss://a:1\"]\ncert_file = \"c.pem\"", "cert_file and key_file go together"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1\"]\nca_file = \"ca.pem\"", "no endpoint uses wss://"},
		{"[apps.zeek]\nendpoints = [\"wss://a:1\"]\nca_file = \"" + filepath.Join(dir, "missing.pem") + "\"", "ca_file"},
		{"[apps.zeek]\nendpoints = [\"wss://a:1\"]\nca_file = \"" + notPEM + "\"", "no PEM certificate"},
		{"[apps.zeek]\nendpoints = [\"wss://a:1\"]\ncert_file = \"" + notPEM + "\"\nkey_file = \"" + notPEM + "\"", "cert_file/key_file"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1\"]\nreconnect_min = \"10s\"\nreconnect_max = \"1s\"", "reconnect_max 1s is less than reconnect_min 10s"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1\"]\nping_interval = \"10ms\"", "ping_interval"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1\"]\nmax_message_size = 10", "max_message_size"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1\"]\nconnect_timeout = \"0s\"", "connect_timeout must be positive"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1\"]\nwrite_timeout = \"soon\"", "invalid duration"},
		{"[apps.zeek]\nendpoints = [\"ws://a:1\"]\nendpoint = \"ws://b:1\"", "apps.zeek.endpoint: unknown key"},
	} {
		_, err := parse(t, c.doc)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error with %q", c.doc, err, c.want)
		}
	}
}

func TestConfigValues(t *testing.T) {
	app, err := parse(t, "[apps.zeek]\nendpoints = [\"ws://a:1\"]\nping_interval = \"0s\"\nstats_interval = \"0s\"\nmodule_namespace = \"\"\nsource = \"\"\napplication_name = \"\"",
		"THREATBUS_APPS_ZEEK_ENDPOINTS=WS://zeek-1:27759, wss://zeek-2:443/zeek/")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"WS://zeek-1:27759", "wss://zeek-2:443/zeek/"}; !reflect.DeepEqual(app.Endpoints, want) {
		t.Errorf("endpoints %v", app.Endpoints)
	}
	var urls []string
	for _, e := range app.st.endpoints {
		urls = append(urls, e.url)
	}
	if want := []string{"ws://zeek-1:27759/v1/messages/json", "wss://zeek-2:443/zeek/"}; !reflect.DeepEqual(urls, want) {
		t.Errorf("normalized %v", urls)
	}
	if err := app.Ready(); err == nil || !strings.Contains(err.Error(), "2 of 2 endpoints not connected") ||
		!strings.Contains(err.Error(), "not connected yet") {
		t.Errorf("Ready before Run: %v", err)
	}
	if err := New().Ready(); err == nil {
		t.Error("Ready before Init: nil")
	}
}

// TestReadme keeps the README honest: its TOML loads through the real
// loader, every config key it documents exists, and every script option it
// names is declared by threatbus.zeek.
func TestReadme(t *testing.T) {
	readme := string(readFile(t, "README.md"))
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("no TOML in the README")
	}
	for _, b := range blocks {
		if _, err := parse(t, b[1]); err != nil {
			t.Errorf("README TOML:\n%s\n%v", b[1], err)
		}
	}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[App]()) {
		if tag := f.Tag.Get("toml"); tag != "" && !strings.Contains(readme, "`"+tag+"`") {
			t.Errorf("the README does not document %s", tag)
		}
	}
	script, _ := readScript(t)
	names := regexp.MustCompile(`Tenzir::([a-z_]+)`).FindAllStringSubmatch(readme, -1)
	for _, row := range regexp.MustCompile("(?m)^\\| `([a-z_]+)`(?:, `([a-z_]+)`)? \\| `").FindAllStringSubmatch(readme[strings.Index(readme, "## Setting up Zeek"):], -1) {
		names = append(names, row[:2])
		if row[2] != "" {
			names = append(names, []string{"", row[2]})
		}
	}
	if len(names) < 15 {
		t.Fatalf("found only %d script names in the README", len(names))
	}
	for _, n := range names {
		q := "Tenzir::" + n[1]
		_, value := script.Values[q]
		_, event := script.Events[q]
		if !value && !event {
			t.Errorf("the README names %s, which threatbus.zeek does not declare", q)
		}
	}
}
