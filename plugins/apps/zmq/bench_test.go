package zmq

import (
	"testing"
)

// BenchmarkDecodeFrame is the per-message cost of validating what an app
// publishes (a ~400-byte indicator with a STIX pattern).
func BenchmarkDecodeFrame(b *testing.B) {
	frame := []byte("stix2/indicator " + goodIndicator)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, rej := decodeFrame(frame); rej != nil {
			b.Fatal(rej)
		}
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	req := []byte(`{"action": "heartbeat", "topic": "abcdefghijklmnopqrstuvwxyzabcdef"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, status := decodeRequest(req); status != "" {
			b.Fatal(status)
		}
	}
}
