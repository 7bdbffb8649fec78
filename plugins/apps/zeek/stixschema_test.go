package zeek

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const stixSchemaBase = "http://raw.githubusercontent.com/oasis-open/cti-stix2-json-schemas/stix2.1/schemas/"

var (
	sightingSchemaOnce sync.Once
	sightingSchema     *jsonschema.Schema
	sightingSchemaErr  error
)

// validateSighting checks b against the OASIS STIX 2.1 sighting schema,
// compiled offline from shared/testdata/stix/schemas.
func validateSighting(t *testing.T, b []byte) {
	t.Helper()
	sightingSchemaOnce.Do(func() {
		c := jsonschema.NewCompiler()
		c.UseLoader(offline{})
		dir := filepath.Join(testdata, "stix", "schemas")
		sightingSchemaErr = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			doc, err := jsonschema.UnmarshalJSON(f)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, path)
			return c.AddResource(stixSchemaBase+filepath.ToSlash(rel), doc)
		})
		// The snapshot lacks two schemas that common/properties.json
		// references; these carry what the upstream ones say.
		for rel, s := range map[string]string{
			"common/binary.json": `{"type":"string","pattern":"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$"}`,
			"common/hex.json":    `{"type":"string","pattern":"^([a-fA-F0-9]{2})+$"}`,
		} {
			if sightingSchemaErr != nil {
				break
			}
			doc, _ := jsonschema.UnmarshalJSON(strings.NewReader(s))
			sightingSchemaErr = c.AddResource(stixSchemaBase+rel, doc)
		}
		if sightingSchemaErr == nil {
			sightingSchema, sightingSchemaErr = c.Compile(stixSchemaBase + "sros/sighting.json")
		}
	})
	if sightingSchemaErr != nil {
		t.Fatalf("compile the OASIS sighting schema: %v", sightingSchemaErr)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if err := sightingSchema.Validate(inst); err != nil {
		t.Errorf("%s fails the OASIS sighting schema: %v", b, err)
	}
}

type offline struct{}

func (offline) Load(url string) (any, error) {
	return nil, &os.PathError{Op: "load schema (offline)", Path: url, Err: fs.ErrNotExist}
}
