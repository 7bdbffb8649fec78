package brokerjson_test

import (
	"testing"
	"time"

	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

// BenchmarkEncodeIntel writes the event the bus sends per indicator and Zeek.
func BenchmarkEncodeIntel(b *testing.B) {
	ev := bj.NewEvent("Tenzir::intel", bj.Vector{bj.NewTimestamp(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)),
		bj.String("indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06"), bj.String("DOMAIN"), bj.String("evil.com"), bj.String("ADD")})
	b.ReportAllocs()
	var n int
	for b.Loop() {
		out, err := bj.EncodeEvent("stix2/indicatorabcdefghij", ev)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.SetBytes(int64(n))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkDecodeSighting reads a sighting as Zeek 8 sends it.
func BenchmarkDecodeSighting(b *testing.B) {
	in := readVector(b, "tenzir-sighting-event.json")
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := bj.Decode(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bj.EventOf(m.(*bj.DataMessage).Data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
