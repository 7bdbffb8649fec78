package stix

import "testing"

var sinkT any

func BenchmarkMicroTS(b *testing.B) {
	s := []byte("2022-03-02T10:11:12.345Z")
	for b.Loop() {
		t, _ := parseTimestamp(s, false)
		sinkT = t.Unix()
	}
}
func BenchmarkMicroUUID(b *testing.B) {
	for b.Loop() {
		if !validUUID("c8f0a6a4-4b0e-4f4e-9a7c-2d1f6b3e9a10") {
			b.Fatal()
		}
	}
}
func BenchmarkMicroID(b *testing.B) {
	for b.Loop() {
		if checkIdentifier("indicator--c8f0a6a4-4b0e-4f4e-9a7c-2d1f6b3e9a10", "indicator") != nil {
			b.Fatal()
		}
	}
}
func BenchmarkMicroCollect(b *testing.B) {
	msg := readTestdata(b, "stix/indicator-opencti-style.json")
	for b.Loop() {
		var f objectFields
		if err := f.collect("", msg, indicatorFields|sightingFields, true); err != nil {
			b.Fatal(err)
		}
	}
}


func BenchmarkMicroValidateDomain(b *testing.B) {
	msg := readTestdata(b, "stix/indicator-domain.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Validate(msg, StrictUTF8|StrictTimestamps); err != nil {
			b.Fatal(err)
		}
	}
}
