package stix

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// validateStepwise is what Validate replaces: Peek, the decoder for the
// type, a UTF-8 check of the whole message and a separate pass over the
// timestamps (as the zmq app did it). Validate must accept exactly what
// this accepts.
func validateStepwise(b []byte, strict Strict) (string, error) {
	if strict&StrictUTF8 != 0 && !utf8.Valid(b) {
		return "", errors.New("not UTF-8")
	}
	typ, _, err := Peek(b)
	if err != nil {
		return "", err
	}
	var stamps []string
	switch typ {
	case TypeIndicator:
		_, err = DecodeIndicator(b)
		stamps = []string{"created", "modified", "valid_from", "valid_until"}
	case TypeSighting:
		_, err = DecodeSighting(b)
		stamps = []string{"created", "modified", "first_seen", "last_seen"}
	default:
		return typ, errors.New("not an indicator or sighting")
	}
	if err != nil || strict&StrictTimestamps == 0 {
		return typ, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return typ, err
	}
	for _, name := range stamps {
		var s string
		if raw, ok := m[name]; !ok || json.Unmarshal(raw, &s) != nil {
			continue
		}
		if last := s[len(s)-1]; last != 'Z' && last != 'z' {
			return typ, errors.New(name + ": offset")
		}
		if s[19] == '.' && len(s)-21 > 6 {
			return typ, errors.New(name + ": fraction")
		}
	}
	return typ, nil
}

func checkValidate(t *testing.T, b []byte, strict Strict) error {
	t.Helper()
	typ, err := Validate(b, strict)
	wtyp, werr := validateStepwise(b, strict)
	if (err == nil) != (werr == nil) {
		t.Fatalf("Validate(%q, %d) = %q, %v; step by step: %q, %v", b, strict, typ, err, wtyp, werr)
	}
	if err == nil && typ != wtyp {
		t.Fatalf("Validate(%q, %d) = %q, want %q", b, strict, typ, wtyp)
	}
	return err
}

var allStrict = []Strict{0, StrictUTF8, StrictTimestamps, StrictUTF8 | StrictTimestamps}

func TestValidate(t *testing.T) {
	ind, sig := baseIndicator, baseSighting
	tests := []struct {
		name   string
		b      []byte
		strict Strict
		ok     bool
		field  string // of the FieldError, if any
	}{
		{"indicator", ind.json(), StrictUTF8 | StrictTimestamps, true, ""},
		{"sighting", sig.json(), StrictUTF8 | StrictTimestamps, true, ""},
		{"escaped type", ind.with("type", `"\u0069ndicator"`).json(), StrictUTF8 | StrictTimestamps, true, ""},
		{"identity", ind.with("type", `"identity"`).json(), 0, false, "type"},
		{"no type", ind.without("type").json(), 0, false, "type"},
		{"type not a string", ind.with("type", `1`).json(), 0, false, "type"},
		{"two types", ind.plus("type", `"indicator"`).json(), 0, false, "type"},
		{"two ids", sig.plus("id", `"x"`).json(), 0, false, "id"},
		{"two patterns", ind.plus("pattern", `"[x:a = 1]"`).json(), 0, false, "pattern"},
		{"sighting with two patterns", sig.plus("pattern", `1`).plus("pattern", `2`).json(), 0, true, ""},
		{"indicator with two counts", ind.plus("count", `1`).plus("count", `2`).json(), 0, true, ""},
		{"bad pattern", ind.with("pattern", `"[x:a = ]"`).json(), 0, false, "pattern"},
		{"bad sighting ref", sig.with("sighting_of_ref", `"x"`).json(), 0, false, "sighting_of_ref"},
		{"offset", ind.with("valid_from", `"2021-01-15T16:29:05+01:00"`).json(), 0, true, ""},
		{"offset strict", ind.with("valid_from", `"2021-01-15T16:29:05+01:00"`).json(), StrictTimestamps, false, "valid_from"},
		{"seven digits", sig.with("last_seen", `"2021-03-01T12:00:05.1234567Z"`).json(), 0, true, ""},
		{"seven digits strict", sig.with("last_seen", `"2021-03-01T12:00:05.1234567Z"`).json(), StrictTimestamps, false, "last_seen"},
		{"six digits strict", sig.with("last_seen", `"2021-03-01T12:00:05.123456z"`).json(), StrictTimestamps, true, ""},
		{"escaped offset strict", ind.with("created", `"2021-01-15T15:29:05\u002b00:00"`).json(), StrictTimestamps, false, "created"},
		{"escaped Z strict", ind.with("created", `"2021-01-15T15:29:05\u005a"`).json(), StrictTimestamps, true, ""},
		{"invalid UTF-8 elsewhere", ind.plus("x_name", "\"\xff\"").json(), 0, true, ""},
		{"invalid UTF-8 elsewhere strict", ind.plus("x_name", "\"\xff\"").json(), StrictUTF8, false, ""},
		{"invalid UTF-8 nested strict", ind.plus("x_list", "[{\"k\":\"\xc3\"}]").json(), StrictUTF8, false, ""},
		{"invalid UTF-8 in a key strict", ind.plus("x_\xe2\x82", "1").json(), StrictUTF8, false, ""},
		{"valid UTF-8 strict", ind.plus("x_name", `"Größe 東京 😀"`).json(), StrictUTF8, true, ""},
		{"malformed", []byte(`{"type":"indicator",}`), 0, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkValidate(t, tt.b, tt.strict)
			if (err == nil) != tt.ok {
				t.Fatalf("Validate: %v, want ok=%v", err, tt.ok)
			}
			if tt.field != "" {
				wantFieldError(t, tt.name, err, tt.field)
			}
			if err != nil && tt.field == "" && !errors.Is(err, ErrMalformedJSON) {
				t.Fatalf("Validate: %v, want a JSON error", err)
			}
		})
	}
}

// TestFieldTable guards the shared field table against drift between the
// index constants, fieldNames and objectField.
func TestFieldTable(t *testing.T) {
	for k, name := range fieldNames {
		if got := objectField([]byte(name)); got != k {
			t.Errorf("objectField(%q) = %d, want %d", name, got, k)
		}
	}
	if indicatorFields&sightingFields != commonFields || numObjectFields > 32 {
		t.Errorf("indicator fields %b and sighting fields %b share more than the common %b", indicatorFields, sightingFields, commonFields)
	}
}

func TestValidateTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "stix", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no STIX test data: %v", err)
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(path)
		for _, strict := range allStrict {
			err := checkValidate(t, b, strict)
			if strings.HasPrefix(name, "indicator-") || strings.HasPrefix(name, "sighting-") {
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
	}
}

func FuzzValidate(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "stix", "*.json"))
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(StrictUTF8|StrictTimestamps))
	}
	f.Add(baseSighting.with("last_seen", `"2021-03-01T12:00:05.1234567Z"`).json(), uint8(StrictTimestamps))
	f.Add(baseIndicator.with("created", `"2021-01-15T15:29:05\u002b00:00"`).json(), uint8(StrictTimestamps))
	f.Add(baseIndicator.plus("x_name", "\"\xff\"").json(), uint8(StrictUTF8))
	f.Add(baseSighting.plus("pattern", `1`).plus("pattern", `2`).json(), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, strict uint8) {
		checkValidate(t, b, Strict(strict)&(StrictUTF8|StrictTimestamps))
	})
}

// TestValidateDoesNotAllocate: Validate runs on every frame an app
// publishes, and for a valid indicator or sighting it only reads the bytes.
func TestValidateDoesNotAllocate(t *testing.T) {
	for _, file := range []string{"indicator-opencti-style.json", "indicator-domain.json", "sighting-zeek.json", "sighting-vast-retro.json"} {
		b := readTestdata(t, "stix/"+file)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := Validate(b, StrictUTF8|StrictTimestamps); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Validate(%s) allocates %v times per call, want 0", file, allocs)
		}
	}
}
