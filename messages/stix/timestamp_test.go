package stix

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestParseTimestampMatchesTimeDate pins what the parser computes to
// time.Date over the whole range it accepts, including day 31 of short
// months (pattern literals), leap seconds, UTC offsets and all nine fraction
// digits.
func TestParseTimestampMatchesTimeDate(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(y, mo, d, h, mi, s, ns, offMin int) {
		t.Helper()
		zone := "Z"
		if offMin != 0 {
			sign, a := '+', offMin
			if a < 0 {
				sign, a = '-', -a
			}
			zone = fmt.Sprintf("%c%02d:%02d", sign, a/60, a%60)
		}
		str := fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d.%09d%s", y, mo, d, h, mi, s, ns, zone)
		got, err := parseTimestamp(str, false)
		if err != nil && d <= daysIn(mo, y) {
			t.Fatalf("parseTimestamp(%q): %v", str, err)
		}
		if d > daysIn(mo, y) || offMin != 0 { // the STIX-only flavour has neither check
			if offMin != 0 {
				return
			}
			if got, err = parseTimestamp(str, true); err != nil {
				t.Fatalf("parseTimestamp(%q, stixOnly): %v", str, err)
			}
		}
		want := time.Date(y, time.Month(mo), d, h, mi, s, ns, time.FixedZone("", offMin*60)).UTC()
		if got != want {
			t.Fatalf("parseTimestamp(%q) = %v, time.Date gives %v", str, got, want)
		}
	}
	for _, y := range []int{0, 1, 99, 100, 399, 400, 1600, 1899, 1900, 1969, 1970, 2000, 2023, 2024, 2100, 9999} {
		for mo := 1; mo <= 12; mo++ {
			for _, d := range []int{1, 28, 29, 30, 31} {
				check(y, mo, d, 0, 0, 0, 0, 0)
				check(y, mo, d, 23, 59, 60, 999999999, 0)
				check(y, mo, d, 0, 0, 0, 0, -(23*60 + 59))
				check(y, mo, d, 23, 59, 59, 0, 23*60+59)
			}
		}
	}
	for range 100000 {
		check(r.IntN(10000), 1+r.IntN(12), 1+r.IntN(31), r.IntN(24), r.IntN(60), r.IntN(61), r.IntN(1e9), r.IntN(2*24*60-1)-(24*60-1))
	}
}
