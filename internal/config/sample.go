package config

import (
	_ "embed"
	"strings"

	"github.com/threatbus/threatbus/plugins"
)

//go:embed sample.conf
var coreSample string

// Sample returns a complete documented configuration: the core sections and
// every compiled-in plugin's sample. Apps are enabled; backbones other than
// the default are commented out, since exactly one may be enabled.
func Sample() string {
	var b strings.Builder
	b.WriteString(coreSample)
	b.WriteString("\n# ---- Backbones: enable exactly one (inmem is the default). ----\n")
	for _, r := range plugins.List(plugins.KindBackbone) {
		b.WriteString("\n")
		s := r.New().SampleConfig()
		if r.Name != "inmem" {
			s = commentOut(s)
		}
		b.WriteString(s)
	}
	b.WriteString("\n# ---- Apps ----\n")
	for _, r := range plugins.List(plugins.KindApp) {
		b.WriteString("\n")
		b.WriteString(r.New().SampleConfig())
	}
	return b.String()
}

func commentOut(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines[i] = "# " + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}
