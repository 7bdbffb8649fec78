package stix

import (
	"testing"
	"time"
)

var sinkI int64

func BenchmarkMicroTimeDate(b *testing.B) {
	for b.Loop() {
		sinkI += time.Date(2022, 3, 2, 10, 11, 12, 345000000, time.UTC).UTC().Unix()
	}
}
func BenchmarkMicroTS2(b *testing.B) {
	s := []byte("2022-03-02T10:11:12.345Z")
	for b.Loop() {
		t, _ := parseTimestamp(s, false)
		sinkI += t.Unix()
	}
}
