package stix

import (
	"testing"
	"time"
	"unicode/utf8"
)

func reportRate(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// BenchmarkPeek is the routing fast path: it runs for every message on the
// bus, so it must stay well above 1M objects/s on one core.
func BenchmarkPeek(b *testing.B) {
	for _, file := range []string{"indicator-opencti-style.json", "sighting-vast-retro.json"} {
		msg := readTestdata(b, "stix/"+file)
		b.Run(file, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Peek(msg); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, "objects/s")
		})
	}
}

func BenchmarkDecodeIndicator(b *testing.B) {
	msg := readTestdata(b, "stix/indicator-opencti-style.json")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeIndicator(msg); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, "objects/s")
}

// benchPatterns: a point IoC as MISP and OpenCTI send most (ipv4), one with
// a quoted hash key and a long value (point), and a compound one.
var benchPatterns = map[string]string{
	"ipv4":     "[ipv4-addr:value = '1.2.3.4']",
	"point":    "[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
	"compound": "[network-traffic:dst_ref.type = 'domain-name' AND network-traffic:dst_ref.value = 'example.com'] REPEATS 5 TIMES WITHIN 1800 SECONDS",
}

func BenchmarkParsePattern(b *testing.B) {
	for name, p := range benchPatterns {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(p); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, "patterns/s")
		})
	}
}

func BenchmarkNewSighting(b *testing.B) {
	seen := time.Date(2021, 3, 1, 12, 0, 5, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewSighting(indicatorID, seen, WithSource("zeek")); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, "objects/s")
}

// BenchmarkInbound compares what an app's inbound path costs per indicator:
// step by step (a UTF-8 pass, Peek, DecodeIndicator; the zmq app adds a
// timestamp pass on top) against one Validate call doing all of it.
func BenchmarkInbound(b *testing.B) {
	msg := readTestdata(b, "stix/indicator-opencti-style.json")
	b.Run("stepwise", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			if !utf8.Valid(msg) {
				b.Fatal("not UTF-8")
			}
			if typ, _, err := Peek(msg); err != nil || typ != TypeIndicator {
				b.Fatal(typ, err)
			}
			if _, err := DecodeIndicator(msg); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, "objects/s")
	})
	b.Run("Validate", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Validate(msg, StrictUTF8|StrictTimestamps); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, "objects/s")
	})
}
