package admin

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/threatbus/threatbus/plugins"
	_ "github.com/threatbus/threatbus/plugins/all"
)

// TestEveryPluginReportIsValid: every compiled-in plugin that reports
// metrics reports samples Prometheus accepts, with one type, help and label
// set per name, even before it was configured or started.
func TestEveryPluginReportIsValid(t *testing.T) {
	reporters, withMetrics := 0, 0
	for _, kind := range []plugins.Kind{plugins.KindApp, plugins.KindBackbone} {
		for _, reg := range plugins.List(kind) {
			rep, ok := reg.New().(plugins.Reporter)
			if !ok {
				continue
			}
			reporters++
			r := rep.Report()
			if r.Details == nil {
				t.Errorf("%s: no details", reg.Name)
			}
			if len(r.Metrics) > 0 {
				withMetrics++ // zeek's are per endpoint: none before Init
			}
			reg2 := prometheus.NewPedanticRegistry()
			if err := reg2.Register(collectorFunc(func(ch chan<- prometheus.Metric) {
				seen := map[string]string{}
				for _, m := range r.Metrics {
					pm, ok := pluginMetric(reg.Name, m, seen)
					if !ok {
						t.Errorf("%s: metric %q refused", reg.Name, m.Name)
						continue
					}
					ch <- pm
				}
			})); err != nil {
				t.Fatal(err)
			}
			if _, err := reg2.Gather(); err != nil {
				t.Errorf("%s: %v", reg.Name, err)
			}
		}
	}
	if reporters < 4 || withMetrics < 3 {
		t.Fatalf("%d plugins report, %d with metrics; want at least misp, zeek, zmq and rabbitmq, and all but zeek with metrics", reporters, withMetrics)
	}
}

// collectorFunc is an unchecked collector.
type collectorFunc func(chan<- prometheus.Metric)

func (collectorFunc) Describe(chan<- *prometheus.Desc)      {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }
