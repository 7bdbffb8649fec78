package stix

import "testing"

func BenchmarkMicroCheckPattern(b *testing.B) {
	for name, p := range benchPatterns {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := checkPattern(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
