package brokerjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

// FuzzDecode feeds the decoder arbitrary bytes. Whatever it accepts must
// encode to strict JSON (unless it holds a non-finite real, which JSON
// cannot carry), decode again, and re-encode to the same bytes: decoding and
// encoding agree on every input.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*.json"))
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`["threatbus/manage","stix2/sighting"]`,
		`{"type":"data-message","topic":"t","@data-type":"string","data":"a` + "\x01" + `\vb\ud83d\ude00\ud800"}`,
		`{"type":"data-message","topic":"t","@data-type":"vector","data":[{"@data-type":"real","data":-nan},{"@data-type":"real","data":inf}]}`,
		`{"type":"data-message","topic":"t","@data-type":"timespan","data":"-9223372036854775808ns"}`,
		`{"type":"data-message","topic":"t","@data-type":"timestamp","data":"0000-01-01T00:00:00.123456789999"}`,
		`{"type":"data-message","topic":"t","@data-type":"subnet","data":"::ffff:1.2.3.4/120"}`,
		`{"type":"data-message","topic":"t","@data-type":"port","data":"0/"}`,
		`{"data":{},"@data-type":"none","topic":"t","type":"data-message","x":[1,{"y":null}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if topics, err := bj.DecodeTopics(b); err == nil {
			back, err := bj.DecodeTopics(bj.EncodeTopics(topics))
			if err != nil || !reflect.DeepEqual(back, topics) {
				t.Fatalf("topics %q: got %q, %v", topics, back, err)
			}
		}
		m, err := bj.Decode(b)
		if err != nil {
			if !errors.Is(err, bj.ErrSyntax) && !errors.Is(err, bj.ErrData) {
				t.Fatalf("error %v is neither ErrSyntax nor ErrData", err)
			}
			return
		}
		if dm, ok := m.(*bj.DataMessage); ok {
			_, _ = bj.EventOf(dm.Data) // must not panic
		}
		enc, err := bj.Encode(m)
		if err != nil {
			if !errors.Is(err, bj.ErrUnencodable) || !hasNonFinite(m) {
				t.Fatalf("cannot encode what was decoded from %q: %v", b, err)
			}
			return
		}
		if !json.Valid(enc) {
			t.Fatalf("encoded invalid JSON: %q", enc)
		}
		m2, err := bj.Decode(enc)
		if err != nil {
			t.Fatalf("cannot decode own encoding %q: %v", enc, err)
		}
		enc2, err := bj.Encode(m2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%q\n%q (%v)", enc, enc2, err)
		}
		if dm, ok := m2.(*bj.DataMessage); ok {
			m3, _ := bj.Decode(enc2)
			if !bj.Equal(dm.Data, m3.(*bj.DataMessage).Data) {
				t.Fatalf("decoded values differ for %q", enc2)
			}
		}
	})
}

func hasNonFinite(m bj.Message) bool {
	dm, ok := m.(*bj.DataMessage)
	if !ok {
		return false
	}
	var walk func(bj.Value) bool
	walk = func(v bj.Value) bool {
		switch x := v.(type) {
		case bj.Real:
			return math.IsNaN(float64(x)) || math.IsInf(float64(x), 0)
		case bj.Vector:
			for _, e := range x {
				if walk(e) {
					return true
				}
			}
		case bj.Set:
			for _, e := range x {
				if walk(e) {
					return true
				}
			}
		case bj.Table:
			for _, e := range x {
				if walk(e.Key) || walk(e.Value) {
					return true
				}
			}
		}
		return false
	}
	return walk(dm.Data)
}
