package config_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/plugins"
	_ "github.com/threatbus/threatbus/plugins/all"
	"github.com/threatbus/threatbus/plugins/backbones/inmem"
)

// testApp exercises every kind of setting a plugin may have.
type testApp struct {
	Host    string          `toml:"host" required:"true"`
	Port    int             `toml:"port"`
	Topics  []string        `toml:"topics"`
	Timeout config.Duration `toml:"timeout"`
	Key     config.Secret   `toml:"key"`
	TLS     struct {
		Verify bool   `toml:"verify"`
		CA     string `toml:"ca_file"`
	} `toml:"tls"`
	initErr error
}

func (*testApp) SampleConfig() string { return "[apps.cfgtest]\nhost = \"localhost\"\n" }
func (a *testApp) Init() error {
	if a.Port < 0 {
		return errors.New("port must not be negative")
	}
	return nil
}
func (*testApp) Run(context.Context, plugins.Bus) error { return nil }

func init() {
	plugins.AddApp("cfgtest", func() plugins.App { return &testApp{Port: 1234} })
	// A second backbone for TestExactlyOneBackbone; only a config naming it
	// (and another) selects it.
	plugins.AddBackbone("second", func() plugins.Backbone { return &inmem.Backbone{} })
}

func parse(t *testing.T, doc string, env ...string) (*config.Config, error) {
	t.Helper()
	return config.Parse("test.toml", []byte(doc), env)
}

func mustParse(t *testing.T, doc string, env ...string) *config.Config {
	t.Helper()
	cfg, err := parse(t, doc, env...)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return cfg
}

func app(t *testing.T, cfg *config.Config) *testApp {
	t.Helper()
	for _, a := range cfg.Apps {
		if a.Name == "cfgtest" {
			return a.Plugin.(*testApp)
		}
	}
	t.Fatal("cfgtest not enabled")
	return nil
}

func TestEmptyFileGivesDefaultsAndInmem(t *testing.T) {
	cfg := mustParse(t, "")
	if cfg.Backbone.Name != "inmem" || len(cfg.Apps) != 0 {
		t.Fatalf("backbone %q apps %v", cfg.Backbone.Name, cfg.Apps)
	}
	if cfg.Logging != config.Defaults().Logging {
		t.Fatalf("logging %+v", cfg.Logging)
	}
	if cfg.Bus != config.Defaults().Bus {
		t.Fatalf("bus %+v", cfg.Bus)
	}
}

func TestDecodesPluginTables(t *testing.T) {
	cfg := mustParse(t, `
[logging]
level = "debug"
format = "json"

[bus]
outbox = 5
drain_timeout = "3s"

[apps.cfgtest]
host = "10.0.0.1"
topics = ["stix2/indicator", "stix2/sighting"]
timeout = "90s"
key = "s3cret"
[apps.cfgtest.tls]
verify = true
ca_file = "/etc/ca.pem"
`)
	a := app(t, cfg)
	if a.Host != "10.0.0.1" || a.Port != 1234 || len(a.Topics) != 2 || a.Timeout.D().Seconds() != 90 || a.Key.Reveal() != "s3cret" || !a.TLS.Verify || a.TLS.CA != "/etc/ca.pem" {
		t.Fatalf("decoded %+v", a)
	}
	if cfg.Logging.Level != "debug" || cfg.Bus.Outbox != 5 || cfg.Bus.DrainTimeout.D().Seconds() != 3 {
		t.Fatalf("core %+v %+v", cfg.Logging, cfg.Bus)
	}
	var out bytes.Buffer
	if err := cfg.Encode(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "s3cret") || !strings.Contains(out.String(), "<redacted>") {
		t.Fatalf("effective config leaks or drops the secret:\n%s", out.String())
	}
	// The effective config is itself a valid config, apart from the secret.
	if _, err := toml.Decode(out.String(), &map[string]any{}); err != nil {
		t.Fatalf("effective config is not TOML: %v", err)
	}
}

// TestErrorsNameKeyAndLine: each problem is one error with file, line and key.
func TestErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string // substrings, one error each
	}{
		{"unknown core key", "[logging]\nlevel = \"info\"\nlevle = \"debug\"\n", []string{"test.toml:3: logging.levle: unknown key"}},
		{"unknown section", "\n[loging]\nlevel = \"info\"\n", []string{"test.toml:2: loging: unknown key", "test.toml:3: loging.level: unknown key"}},
		{"unknown plugin key", "[apps.cfgtest]\nhost = \"h\"\n\nprot = 1\n", []string{"test.toml:4: apps.cfgtest.prot: unknown key"}},
		{"unknown nested key", "[apps.cfgtest]\nhost = \"h\"\n[apps.cfgtest.tls]\nverfy = true\n", []string{"test.toml:4: apps.cfgtest.tls.verfy: unknown key"}},
		{"wrong type core", "[bus]\noutbox = \"many\"\n", []string{"test.toml:2: bus.outbox: incompatible types"}},
		{"wrong type plugin", "[apps.cfgtest]\nhost = \"h\"\nport = \"80\"\n", []string{"test.toml:3: apps.cfgtest.port: incompatible types"}},
		{"bad duration", "[apps.cfgtest]\nhost = \"h\"\ntimeout = \"soon\"\n", []string{"test.toml:3: apps.cfgtest.timeout: invalid duration"}},
		{"missing required", "# comment\n[apps.cfgtest]\nport = 1\n", []string{"test.toml:2: apps.cfgtest.host: required value is missing"}},
		{"no such app", "[apps.nosuch]\nx = 1\n", []string{"test.toml:1: apps.nosuch: no such app plugin (compiled in:"}},
		{"no such backbone", "[backbones.kafka]\n", []string{"test.toml:1: backbones.kafka: no such backbone plugin"}},
		{"bad level", "[logging]\nlevel = \"loud\"\n", []string{"test.toml:1: logging: level \"loud\""}},
		{"bad bus values", "[bus]\noutbox = 0\n", []string{"test.toml:1: bus: outbox 0: must be at least 1"}},
		{"plugin Init", "[apps.cfgtest]\nhost = \"h\"\nport = -1\n", []string{"test.toml:1: apps.cfgtest: port must not be negative"}},
		{"syntax", "[bus\noutbox = 1\n", []string{"test.toml:2: expected '.' or ']'"}},
		{"several at once", "[logging]\nlevle = 1\n[apps.cfgtest]\nport = 2\nfoo = 3\n", []string{
			"test.toml:2: logging.levle: unknown key", "test.toml:5: apps.cfgtest.foo: unknown key", "test.toml:3: apps.cfgtest.host: required value is missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, c.doc)
			if err == nil {
				t.Fatal("accepted")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(c.want), err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("not a *config.Error: %T", err)
			}
		})
	}
}

func TestExactlyOneBackbone(t *testing.T) {
	_, err := parse(t, "[backbones.inmem]\n[backbones.second]\n")
	if err == nil || !strings.Contains(err.Error(), "exactly one backbone") {
		t.Fatalf("two backbones: %v", err)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	doc := "[apps.cfgtest]\nhost = \"file\"\n"
	cfg := mustParse(t, doc,
		"THREATBUS_LOGGING_LEVEL=debug",
		"THREATBUS_BUS_OUTBOX=77",
		"THREATBUS_BUS_SNAPSHOT_TTL=1m",
		"THREATBUS_APPS_CFGTEST_HOST=env",
		"THREATBUS_APPS_CFGTEST_TOPICS=a, b",
		"THREATBUS_APPS_CFGTEST_TLS_VERIFY=true",
		"THREATBUS_APPS_CFGTEST_KEY=k",
		"HOME=/root",
	)
	a := app(t, cfg)
	if cfg.Logging.Level != "debug" || cfg.Bus.Outbox != 77 || cfg.Bus.SnapshotTTL.D().Minutes() != 1 ||
		a.Host != "env" || strings.Join(a.Topics, "|") != "a|b" || !a.TLS.Verify || a.Key.Reveal() != "k" {
		t.Fatalf("overrides not applied: %+v %+v %+v", cfg.Logging, cfg.Bus, a)
	}
	a = app(t, mustParse(t, doc, `THREATBUS_APPS_CFGTEST_TOPICS=["x", "y,z"]`))
	if strings.Join(a.Topics, "|") != "x|y,z" {
		t.Fatalf("TOML list: %v", a.Topics)
	}
	// A required value may come from the environment alone.
	mustParse(t, "[apps.cfgtest]\n", "THREATBUS_APPS_CFGTEST_HOST=env")

	for _, c := range []struct{ env, want string }{
		{"THREATBUS_BUS_OUTBOX=many", "THREATBUS_BUS_OUTBOX: bus.outbox: cannot parse"},
		{"THREATBUS_LOGGING_LEVL=x", "THREATBUS_LOGGING_LEVL: names no setting"},
		{"THREATBUS_APPS_ZEEK_HOST=x", "THREATBUS_APPS_ZEEK_HOST: names no setting"},
		{"THREATBUS_APPS_CFGTEST_TIMEOUT=soon", "invalid duration"},
	} {
		if _, err := parse(t, doc, c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.env, err, c.want)
		}
	}
}

// TestShippedConfigsLoad loads config.toml, the full sample and every
// plugin's sample.conf through the real loader, so documentation cannot rot.
func TestShippedConfigsLoad(t *testing.T) {
	root := filepath.Join("..", "..")
	data, err := os.ReadFile(filepath.Join(root, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse("config.toml", data, nil); err != nil {
		t.Errorf("config.toml: %v", err)
	}
	if _, err := config.Parse("sample", []byte(config.Sample()), nil); err != nil {
		t.Errorf("threatbus config output: %v", err)
	}
	for _, kind := range []plugins.Kind{plugins.KindApp, plugins.KindBackbone} {
		for _, r := range plugins.List(kind) {
			if r.Name == "cfgtest" || r.Name == "second" {
				continue
			}
			dir := filepath.Join(root, "plugins", string(kind), r.Name)
			sample, err := os.ReadFile(filepath.Join(dir, "sample.conf"))
			if err != nil {
				t.Errorf("%s: %v", r.Name, err)
				continue
			}
			if got := r.New().SampleConfig(); got != string(sample) {
				t.Errorf("%s: SampleConfig() is not sample.conf", r.Name)
			}
			if _, err := config.Parse(dir+"/sample.conf", sample, nil); err != nil {
				t.Errorf("%s sample: %v", r.Name, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
				t.Errorf("%s: %v", r.Name, err)
			}
		}
	}
}

func TestChaosRefusedUnlessEnabled(t *testing.T) {
	for doc, want := range map[string]string{
		"[chaos]\ntargets = [\"router\"]\nprobability = 0.5\n":                 "test.toml:1: chaos: targets, probability or interval set but enabled = false",
		"[chaos]\nenabled = true\ntargets = [\"zeek\"]\ninterval = \"1s\"\n":   `target "zeek" is not an enabled plugin`,
		"[chaos]\nenabled = true\ntargets = [\"router\"]\nprobability = 1.5\n": "probability 1.5: want 0..1",
		"[chaos]\nenabled = true\nprobability = 0.1\n":                         "probability or interval without targets",
		"[supervision]\nbackoff_min = \"2s\"\nbackoff_max = \"1s\"\n":          "want 0 < backoff_min <= backoff_max",
	} {
		if _, err := parse(t, doc); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", doc, err, want)
		}
	}
	cfg := mustParse(t, "[chaos]\nenabled = true\ntargets = [\"router\", \"inmem\"]\ninterval = \"1m\"\n")
	if !cfg.Chaos.Enabled || len(cfg.Chaos.Targets) != 2 {
		t.Fatalf("chaos: %+v", cfg.Chaos)
	}
}

// TestAdminListenValidated: a bad admin address is a configuration error
// naming admin.listen, found before anything starts.
func TestAdminListenValidated(t *testing.T) {
	for _, bad := range []string{"127.0.0.1", "nonsense", "127.0.0.1:99999", "127.0.0.1:http", "bad host!:1"} {
		_, err := parse(t, "[admin]\nlisten = \""+bad+"\"\n")
		if err == nil || !strings.Contains(err.Error(), "admin.listen") {
			t.Errorf("listen %q: %v", bad, err)
		}
	}
	for _, good := range []string{"", "127.0.0.1:13380", ":0", "[::1]:8080", "localhost:9000"} {
		if _, err := parse(t, "[admin]\nlisten = \""+good+"\"\n"); err != nil {
			t.Errorf("listen %q: %v", good, err)
		}
	}
}

// TestEncodeHasEverySection: check prints the configuration as loaded,
// the supervision, admin and chaos tables included.
func TestEncodeHasEverySection(t *testing.T) {
	cfg := mustParse(t, "[admin]\nlisten = \"127.0.0.1:23399\"\n[supervision]\nmax_restarts = 3\n", "THREATBUS_ADMIN_PPROF=true")
	var b strings.Builder
	if err := cfg.Encode(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[admin]", `listen = "127.0.0.1:23399"`, "pprof = true", "[supervision]", "max_restarts = 3", "[chaos]"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("encoded configuration lacks %s:\n%s", want, b.String())
		}
	}
}
