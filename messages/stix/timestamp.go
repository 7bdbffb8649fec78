package stix

import (
	"errors"
	"fmt"
	"time"
)

// timestampLayout is what the bus emits: STIX requires UTC with a Z, and
// created/modified must be precise to the millisecond, so we always print
// exactly three fractional digits.
const timestampLayout = "2006-01-02T15:04:05.000Z"

// FormatTimestamp renders t the way every object the bus creates carries
// timestamps, e.g. 2021-01-15T15:29:05.000Z. Precision below a millisecond is
// truncated.
func FormatTimestamp(t time.Time) string {
	return t.UTC().Format(timestampLayout)
}

func checkEmittable(t time.Time) error {
	if t.IsZero() {
		return errors.New("timestamp is not set")
	}
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("year %d cannot be written as an RFC 3339 timestamp", y)
	}
	return nil
}

// ParseTimestamp parses any RFC 3339 date-time ("Accept any valid RFC 3339 on
// input"): offsets, lower-case t/z and any number of fractional digits are
// fine, impossible calendar dates such as February 30 are not.
func ParseTimestamp(s string) (time.Time, error) {
	return parseTimestamp(s, false)
}

func digits[T string | []byte](s T, i, n int) (int, bool) {
	v := 0
	for k := i; k < i+n; k++ {
		c := s[k]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

var pow10 = [...]int{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(month, year int) int {
	switch month {
	case 2:
		if isLeap(year) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// parseTimestamp is hand-written rather than time.Parse because the pattern
// grammar needs the strict STIX form (upper-case T and Z, no offset) and
// both callers want an error that says which part is wrong. It takes bytes
// too so that decoders can parse a JSON value in place.
func parseTimestamp[T string | []byte](s T, stixOnly bool) (time.Time, error) {
	bad := func(format string, args ...any) (time.Time, error) {
		return time.Time{}, fmt.Errorf("invalid timestamp %q: "+format, append([]any{s}, args...)...)
	}
	if len(s) < 20 {
		return bad("too short for YYYY-MM-DDThh:mm:ssZ")
	}
	year, ok1 := digits(s, 0, 4)
	month, ok2 := digits(s, 5, 2)
	day, ok3 := digits(s, 8, 2)
	hour, ok4 := digits(s, 11, 2)
	minute, ok5 := digits(s, 14, 2)
	sec, ok6 := digits(s, 17, 2)
	t := s[10]
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || s[4] != '-' || s[7] != '-' ||
		s[13] != ':' || s[16] != ':' || !(t == 'T' || !stixOnly && t == 't') {
		return bad("not of the form YYYY-MM-DDThh:mm:ss")
	}
	switch {
	case month < 1 || month > 12:
		return bad("month %02d out of range", month)
	case day < 1 || day > 31:
		return bad("day %02d out of range", day)
	case !stixOnly && day > daysIn(month, year):
		// Objects get calendar validation; pattern literals follow the
		// OASIS grammar, which bounds each field only (day 01–31), and the
		// pattern test vectors rely on that.
		return bad("day %02d does not exist in %04d-%02d", day, year, month)
	case hour > 23:
		return bad("hour %02d out of range", hour)
	case minute > 59:
		return bad("minute %02d out of range", minute)
	case sec > 60: // 60 is a leap second, which RFC 3339 allows
		return bad("second %02d out of range", sec)
	}
	i := 19
	nsec := 0
	if s[i] == '.' {
		i++
		start := i
		n := 0 // digits in nsec; those past the ninth are below a nanosecond
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			if n < 9 {
				nsec = nsec*10 + int(s[i]-'0')
				n++
			}
			i++
		}
		if i == start {
			return bad("no digits after '.'")
		}
		nsec *= pow10[9-n]
	}
	if i >= len(s) {
		return bad("missing time zone (Z)")
	}
	loc := time.UTC
	switch z := s[i]; {
	case z == 'Z' || !stixOnly && z == 'z':
		i++
	case stixOnly:
		return bad("STIX pattern timestamps must be UTC and end in Z")
	case z == '+' || z == '-':
		if len(s)-i != 6 || s[i+3] != ':' {
			return bad("malformed UTC offset")
		}
		oh, ok1 := digits(s, i+1, 2)
		om, ok2 := digits(s, i+4, 2)
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return bad("malformed UTC offset")
		}
		off := (oh*60 + om) * 60
		if z == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
		i += 6
	default:
		return bad("unexpected %q where the time zone should be", z)
	}
	if i != len(s) {
		return bad("unexpected text after the time zone")
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc).UTC(), nil
}

// checkSTIXTimestamp holds a valid RFC 3339 timestamp to the form STIX 2.1
// prescribes and its reference implementation (python-stix2) insists on:
// UTC written as Z, and at most six fraction digits (Python's %f).
func checkSTIXTimestamp[T string | []byte](s T) error {
	if len(s) < 20 {
		return nil // not a timestamp at all: parseTimestamp judged it
	}
	if last := s[len(s)-1]; last != 'Z' && last != 'z' {
		return fmt.Errorf("%q: STIX timestamps end in Z, not a UTC offset", s)
	}
	if s[19] == '.' && len(s)-21 > 6 {
		return fmt.Errorf("%q: more than six fraction digits", s)
	}
	return nil
}
