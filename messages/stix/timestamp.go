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

// digits2 reads the two decimal digits at s[i:i+2].
func digits2[T string | []byte](s T, i int) (int, bool) {
	a, b := s[i]-'0', s[i+1]-'0' // a byte below '0' wraps to above 9
	return int(a)*10 + int(b), a <= 9 && b <= 9
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
	century, ok0 := digits2(s, 0)
	year, ok1 := digits2(s, 2)
	year += century * 100
	month, ok2 := digits2(s, 5)
	day, ok3 := digits2(s, 8)
	hour, ok4 := digits2(s, 11)
	minute, ok5 := digits2(s, 14)
	sec, ok6 := digits2(s, 17)
	t := s[10]
	if !(ok0 && ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || s[4] != '-' || s[7] != '-' ||
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
	off := 0 // seconds east of UTC
	switch z := s[i]; {
	case z == 'Z' || !stixOnly && z == 'z':
		i++
	case stixOnly:
		return bad("STIX pattern timestamps must be UTC and end in Z")
	case z == '+' || z == '-':
		if len(s)-i != 6 || s[i+3] != ':' {
			return bad("malformed UTC offset")
		}
		oh, ok1 := digits2(s, i+1)
		om, ok2 := digits2(s, i+4)
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return bad("malformed UTC offset")
		}
		off = (oh*60 + om) * 60
		if z == '-' {
			off = -off
		}
		i += 6
	default:
		return bad("unexpected %q where the time zone should be", z)
	}
	if i != len(s) {
		return bad("unexpected text after the time zone")
	}
	// What time.Date(…).UTC() gives, without its normalisation and zone
	// machinery: the day count is linear in day and the seconds in sec, so
	// day 31 of a short month and second 60 roll over as they do there.
	unix := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec-off)
	return time.Unix(unix, int64(nsec)).UTC(), nil
}

// daysSinceEpoch is the number of days from 1970-01-01 to the given date of
// the proleptic Gregorian calendar (negative before it) for years 0 to 9999
// and any day >= 1 of a month, counting on past the month's end.
func daysSinceEpoch(year, month, day int) int64 {
	// Count in years that start on March 1, so that a leap day is the last
	// day of its year (after H. Hinnant's days_from_civil), and from the
	// year -400, so that all of it is unsigned and cheap to divide.
	y, m := uint32(year)+400, uint32(month)
	if m <= 2 {
		y, m = y-1, m+12
	}
	days := 365*y + y/4 - y/100 + y/400 + (153*(m-3)+2)/5 + uint32(day) - 1
	// 146097 days from -400-03-01 to 0000-03-01, 719468 from there to
	// 1970-01-01.
	return int64(days) - (719468 + 146097)
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
