package stix

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestDecodeEveryTestdataFile decodes every JSON file in the shared STIX test
// data. Bundles are not bus messages (nothing routes them), but what they
// carry is: each object of a bundle is decoded on its own, indicators and
// sightings fully and every other SDO/SRO through Peek, which is all the bus
// ever does with a type it has no topic for.
func TestDecodeEveryTestdataFile(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "stix", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no STIX test data: %v", err)
	}
	decoded := 0
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			orig := bytes.Clone(b)
			typ, _, err := Peek(b)
			if err != nil {
				t.Fatalf("Peek: %v", err)
			}
			if typ == "bundle" {
				decoded += decodeBundle(t, b)
				return
			}
			m, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !bytes.Equal(m.Bytes(), orig) || !bytes.Equal(b, orig) {
				t.Error("decoding changed the bytes")
			}
			decoded++
		})
	}
	if decoded < len(files) {
		t.Errorf("decoded %d objects from %d files", decoded, len(files))
	}
}

func decodeBundle(t *testing.T, b []byte) int {
	t.Helper()
	var bundle struct {
		Objects []json.RawMessage `json:"objects"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil || len(bundle.Objects) == 0 {
		t.Fatalf("bundle: %v", err)
	}
	n := 0
	for i, obj := range bundle.Objects {
		typ, id, err := Peek(obj)
		if err != nil || id == "" {
			t.Errorf("object %d: Peek = %q %q %v", i, typ, id, err)
			continue
		}
		switch typ {
		case TypeIndicator:
			ind, err := DecodeIndicator(obj)
			if err != nil {
				t.Errorf("object %d (%s): %v", i, id, err)
				continue
			}
			if ind.Parsed == nil || !bytes.Equal(ind.Raw, obj) {
				t.Errorf("object %d (%s): pattern not parsed or bytes changed", i, id)
			}
			n++
		case TypeSighting:
			if _, err := DecodeSighting(obj); err != nil {
				t.Errorf("object %d (%s): %v", i, id, err)
			}
			n++
		default:
			if _, err := TopicFor(typ); err == nil {
				t.Errorf("object %d: %s should have been decoded", i, typ)
			}
		}
	}
	return n
}
