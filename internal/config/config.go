// Package config loads threatbus's TOML configuration: strictly (an unknown
// key, a wrong type, a missing required value or an unknown plugin is an error
// naming the key and its line), with THREATBUS_<SECTION>_<KEY> environment
// overrides, into plugin values that have passed their own Init. Loading never
// dials or starts anything.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/threatbus/threatbus/plugins"
)

// Config is a loaded, validated configuration.
type Config struct {
	Logging     Logging     `toml:"logging"`
	Bus         Bus         `toml:"bus"`
	Supervision Supervision `toml:"supervision"`
	Admin       Admin       `toml:"admin"`
	Chaos       Chaos       `toml:"chaos"`
	// Backbone is the one backbone instance (inmem when none is configured).
	Backbone Instance `toml:"-"`
	// Apps are the enabled app instances, sorted by name.
	Apps []Instance `toml:"-"`
}

// Logging configures the daemon's log output.
type Logging struct {
	// Level is debug, info, warn or error.
	Level string `toml:"level"`
	// Format is text or json.
	Format string `toml:"format"`
}

// Bus configures the core.
type Bus struct {
	// Outbox is the capacity of each subscriber's outbox; beyond it the oldest
	// message is dropped and counted.
	Outbox int `toml:"outbox"`
	// SnapshotTTL is how long a snapshot id accepts envelopes.
	SnapshotTTL Duration `toml:"snapshot_ttl"`
	// MaxSnapshots caps the snapshots in flight; the oldest expire first.
	MaxSnapshots int `toml:"max_snapshots"`
	// DedupWindow is how many recent message ids the router remembers, per
	// publishing bus process, to drop redeliveries.
	DedupWindow int `toml:"dedup_window"`
	// DrainTimeout bounds a graceful stop.
	DrainTimeout Duration `toml:"drain_timeout"`
}

// Supervision configures how failed plugin actors are restarted.
type Supervision struct {
	// MaxRestarts within RestartWindow stops an app for good; the backbone
	// and subscribers are never given up on.
	MaxRestarts   int      `toml:"max_restarts"`
	RestartWindow Duration `toml:"restart_window"`
	// A restart waits BackoffMin, doubling with each failure in the window
	// up to BackoffMax, with jitter.
	BackoffMin Duration `toml:"backoff_min"`
	BackoffMax Duration `toml:"backoff_max"`
}

// Admin configures the HTTP server for metrics, health and status.
type Admin struct {
	// Listen is host:port; "" turns the server off.
	Listen string `toml:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/.
	Pprof bool `toml:"pprof"`
}

// validate checks listen before anything is started: a bad address found
// only when the server binds would come after the plugins had started.
func (a Admin) validate() error {
	if a.Listen == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return fmt.Errorf("%q: want host:port (\"\" turns the server off): %v", a.Listen, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", a.Listen, port)
	}
	if host != "" {
		if err := CheckHost(host); err != nil {
			return fmt.Errorf("%q: %v", a.Listen, err)
		}
	}
	return nil
}

// Chaos configures fault injection. Everything here is refused unless
// Enabled is true.
type Chaos struct {
	Enabled bool `toml:"enabled"`
	// Targets are plugin names (an app, the backbone) or "router".
	Targets []string `toml:"targets"`
	// Probability that a target panics on a message it receives (a batch
	// of envelopes counts as one message).
	Probability float64 `toml:"probability"`
	// Interval makes every target panic once per interval.
	Interval Duration `toml:"interval"`
}

// Instance is one configured plugin.
type Instance struct {
	Kind   plugins.Kind
	Name   string
	Plugin plugins.Plugin
}

// Defaults returns the configuration of an empty file.
func Defaults() *Config {
	return &Config{
		Logging: Logging{Level: "info", Format: "text"},
		Supervision: Supervision{
			MaxRestarts:   10,
			RestartWindow: Duration(60e9),
			BackoffMin:    Duration(100e6),
			BackoffMax:    Duration(30e9),
		},
		Admin: Admin{Listen: "127.0.0.1:13380"},
		Bus: Bus{
			Outbox:       10000,
			SnapshotTTL:  Duration(10 * 60e9),
			MaxSnapshots: 10000,
			DedupWindow:  1 << 16,
			DrainTimeout: Duration(10e9),
		},
	}
}

// Error is one problem in a configuration, located where possible.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and validates the file at path, with overrides from the process
// environment.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: err.Error()}
	}
	return Parse(path, data, os.Environ())
}

// raw is the file's shape before plugin tables are decoded into plugins.
type raw struct {
	Logging     *Logging                  `toml:"logging"`
	Bus         *Bus                      `toml:"bus"`
	Supervision *Supervision              `toml:"supervision"`
	Admin       *Admin                    `toml:"admin"`
	Chaos       *Chaos                    `toml:"chaos"`
	Apps        map[string]toml.Primitive `toml:"apps"`
	Backbones   map[string]toml.Primitive `toml:"backbones"`
}

// Parse validates a configuration document. name is used in errors; environ
// holds KEY=value pairs (os.Environ()) for the THREATBUS_* overrides. The
// error, if any, joins one *Error per problem.
func Parse(name string, data []byte, environ []string) (*Config, error) {
	cfg := Defaults()
	r := raw{Logging: &cfg.Logging, Bus: &cfg.Bus, Supervision: &cfg.Supervision, Admin: &cfg.Admin, Chaos: &cfg.Chaos}
	md, err := toml.Decode(string(data), &r)
	if err != nil {
		return nil, tomlError(name, err)
	}
	lines := keyLines(data)
	var errs []error
	fail := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: name, Line: lineOf(lines, key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	unknown := map[string]bool{} // tables not (fully) decoded: their keys are not reported as unknown
	decode := func(kind plugins.Kind, tables map[string]toml.Primitive) []Instance {
		var out []Instance
		for _, n := range sortedKeys(tables) {
			key := string(kind) + "." + n
			reg, ok := plugins.Lookup(kind, n)
			if !ok {
				unknown[key] = true
				fail(key, "no such %s plugin (compiled in: %s)", strings.TrimSuffix(string(kind), "s"), strings.Join(plugins.Names(kind), ", "))
				continue
			}
			p := reg.New()
			if p == nil {
				fail(key, "the plugin's constructor returned nil (a bug in the plugin)")
				continue
			}
			if err := md.PrimitiveDecode(tables[n], p); err != nil {
				// Decoding stopped part way: its other keys are not unknown.
				unknown[key] = true
				errs = append(errs, tomlError(name, err))
				continue
			}
			out = append(out, Instance{Kind: kind, Name: n, Plugin: p})
		}
		return out
	}
	cfg.Apps = decode(plugins.KindApp, r.Apps)
	backbones := decode(plugins.KindBackbone, r.Backbones)

	for _, k := range md.Undecoded() {
		key := k.String()
		if len(k) == 2 && (k[0] == string(plugins.KindApp) || k[0] == string(plugins.KindBackbone)) {
			continue // a plugin table, reported above if unknown
		}
		if len(k) > 2 && unknown[k[0]+"."+k[1]] {
			continue
		}
		fail(key, "unknown key")
	}

	// Environment overrides apply to the sections the file enables.
	sections := []section{
		{prefix: []string{"logging"}, value: &cfg.Logging},
		{prefix: []string{"bus"}, value: &cfg.Bus},
		{prefix: []string{"supervision"}, value: &cfg.Supervision},
		{prefix: []string{"admin"}, value: &cfg.Admin},
		{prefix: []string{"chaos"}, value: &cfg.Chaos},
	}
	for _, in := range append(append([]Instance{}, backbones...), cfg.Apps...) {
		sections = append(sections, section{prefix: []string{string(in.Kind), in.Name}, value: in.Plugin})
	}
	overridden, envErrs := applyEnv(sections, environ)
	errs = append(errs, envErrs...)

	for _, s := range sections {
		for _, key := range missingRequired(s, md, overridden) {
			fail(key, "required value is missing")
		}
	}

	switch len(backbones) {
	case 0:
		reg, _ := plugins.Lookup(plugins.KindBackbone, "inmem")
		if reg.New == nil {
			fail("backbones", "no backbone configured and the default inmem backbone is not compiled in")
		} else {
			backbones = []Instance{{Kind: plugins.KindBackbone, Name: "inmem", Plugin: reg.New()}}
		}
	case 1:
	default:
		names := make([]string, len(backbones))
		for i, b := range backbones {
			names[i] = b.Name
		}
		fail("backbones", "exactly one backbone may be enabled, found %d (%s): each would deliver every message again", len(backbones), strings.Join(names, ", "))
	}
	if len(backbones) > 0 {
		cfg.Backbone = backbones[0]
	}

	if err := cfg.Logging.validate(); err != nil {
		fail("logging", "%v", err)
	}
	if err := cfg.Bus.validate(); err != nil {
		fail("bus", "%v", err)
	}
	if err := cfg.Supervision.validate(); err != nil {
		fail("supervision", "%v", err)
	}
	if err := cfg.validateChaos(); err != nil {
		fail("chaos", "%v", err)
	}
	if err := cfg.Admin.validate(); err != nil {
		fail("admin.listen", "%v", err)
	}
	if len(errs) == 0 { // Init sees only well-formed values
		for _, in := range append(append([]Instance{}, backbones...), cfg.Apps...) {
			if err := in.Plugin.Init(); err != nil {
				fail(string(in.Kind)+"."+in.Name, "%v", err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

func (l *Logging) validate() error {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("level %q: want debug, info, warn or error", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		return fmt.Errorf("format %q: want text or json", l.Format)
	}
	return nil
}

func (s *Supervision) validate() error {
	var errs []error
	if s.MaxRestarts < 0 {
		errs = append(errs, fmt.Errorf("max_restarts %d: must not be negative", s.MaxRestarts))
	}
	if s.RestartWindow <= 0 {
		errs = append(errs, errors.New("restart_window must be positive"))
	}
	if s.BackoffMin <= 0 || s.BackoffMax < s.BackoffMin {
		errs = append(errs, fmt.Errorf("backoff_min %s and backoff_max %s: want 0 < backoff_min <= backoff_max", s.BackoffMin.D(), s.BackoffMax.D()))
	}
	return errors.Join(errs...)
}

// validateChaos refuses fault injection that is configured but not
// explicitly enabled, and targets that name nothing.
func (c *Config) validateChaos() error {
	ch := c.Chaos
	if !ch.Enabled {
		if len(ch.Targets) > 0 || ch.Probability != 0 || ch.Interval != 0 {
			return errors.New("targets, probability or interval set but enabled = false: fault injection is refused unless enabled")
		}
		return nil
	}
	var errs []error
	if ch.Probability < 0 || ch.Probability > 1 {
		errs = append(errs, fmt.Errorf("probability %v: want 0..1", ch.Probability))
	}
	if (ch.Probability > 0 || ch.Interval > 0) && len(ch.Targets) == 0 {
		errs = append(errs, errors.New("probability or interval without targets"))
	}
	known := map[string]bool{"router": true, c.Backbone.Name: true}
	for _, a := range c.Apps {
		known[a.Name] = true
	}
	for _, t := range ch.Targets {
		if !known[t] {
			errs = append(errs, fmt.Errorf("target %q is not an enabled plugin or \"router\"", t))
		}
	}
	return errors.Join(errs...)
}

func (b *Bus) validate() error {
	var errs []error
	if b.Outbox < 1 {
		errs = append(errs, fmt.Errorf("outbox %d: must be at least 1", b.Outbox))
	}
	if b.MaxSnapshots < 1 {
		errs = append(errs, fmt.Errorf("max_snapshots %d: must be at least 1", b.MaxSnapshots))
	}
	if b.DedupWindow < 1 {
		errs = append(errs, fmt.Errorf("dedup_window %d: must be at least 1", b.DedupWindow))
	}
	if b.SnapshotTTL <= 0 {
		errs = append(errs, errors.New("snapshot_ttl must be positive"))
	}
	if b.DrainTimeout <= 0 {
		errs = append(errs, errors.New("drain_timeout must be positive"))
	}
	return errors.Join(errs...)
}

// tomlError converts the toml package's errors, which carry a line for syntax
// and type problems, to an *Error.
func tomlError(file string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
	}
	msg := err.Error()
	line := 0
	key := ""
	// Type errors read `toml: line 7 (last key "bus.outbox"): incompatible types: …`.
	if rest, ok := strings.CutPrefix(msg, "toml: "); ok {
		msg = rest
		if _, err := fmt.Sscanf(rest, "line %d", &line); err == nil {
			if i := strings.Index(rest, "(last key "); i >= 0 {
				if j := strings.Index(rest[i:], "): "); j >= 0 {
					key = strings.Trim(rest[i+len("(last key "):i+j], `"`)
					msg = rest[i+j+3:]
				}
			}
		}
	}
	return &Error{File: file, Line: line, Key: key, Msg: msg}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Encode writes the effective configuration as TOML; secrets are redacted.
func (c *Config) Encode(w io.Writer) error {
	doc := map[string]any{
		"logging":     c.Logging,
		"bus":         c.Bus,
		"supervision": c.Supervision,
		"admin":       c.Admin,
		"chaos":       c.Chaos,
		"backbones":   map[string]any{c.Backbone.Name: c.Backbone.Plugin},
	}
	if len(c.Apps) > 0 {
		apps := map[string]any{}
		for _, a := range c.Apps {
			apps[a.Name] = a.Plugin
		}
		doc["apps"] = apps
	}
	return toml.NewEncoder(w).Encode(doc)
}
