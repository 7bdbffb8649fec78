package misp

import (
	"testing"
	"time"
)

// BenchmarkProcess measures the intake's work per MISP message: decode,
// filter, map, build and validate the indicator.
func BenchmarkProcess(b *testing.B) {
	for _, c := range []struct {
		name, file string
		filters    []Filter
	}{
		{"domain", "attribute-add-domain.json", nil},
		{"compound", "attribute-add-compound-domain-ip.json", nil},
		{"sha256/filtered-in", "attribute-add-sha256.json", []Filter{{Orgs: []string{"1"}, Types: []string{"sha256", "domain"}}}},
	} {
		data := readTestdata(b, c.file)
		b.Run(c.name, func(b *testing.B) {
			p := newProcessor(c.filters)
			now := time.Now()
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := p.process(data, now); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
