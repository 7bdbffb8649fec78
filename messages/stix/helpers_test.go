package stix

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testdata is the project's shared test data, used in place (never copied).
const testdata = "../../../shared/testdata"

func readTestdata(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, rel))
	if err != nil {
		t.Fatalf("read test data: %v", err)
	}
	return b
}

// patternLines returns the non-empty lines of a pattern file.
func patternLines(t testing.TB, name string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(string(readTestdata(t, filepath.Join("stix-patterns", name))), "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no patterns", name)
	}
	return out
}

func patternFiles(t testing.TB, prefix string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(testdata, "stix-patterns", prefix+"*.txt"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s*.txt pattern files: %v", prefix, err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

func mustParse(t testing.TB, s string) *Pattern {
	t.Helper()
	p, err := parseChecked(t, s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return p
}

// parseChecked is Parse, and checkPattern (Validate's parser, which builds
// no tree) must return the very same error.
func parseChecked(t testing.TB, s string) (*Pattern, error) {
	t.Helper()
	p, err := Parse(s)
	if cerr := checkPattern(s); !reflect.DeepEqual(cerr, err) {
		t.Fatalf("checkPattern(%q) = %v, Parse: %v", s, cerr, err)
	}
	return p, err
}
