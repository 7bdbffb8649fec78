package stix

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const schemaBase = "http://raw.githubusercontent.com/oasis-open/cti-stix2-json-schemas/stix2.1/schemas/"

// schemaStandIns replace the two schemas that common/properties.json
// references but the test data snapshot does not contain. They carry the
// "type" and "pattern" of the upstream common/binary.json and
// common/hex.json, which is all those schemas say.
var schemaStandIns = map[string]string{
	"common/binary.json": `{"type":"string","pattern":"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$"}`,
	"common/hex.json":    `{"type":"string","pattern":"^([a-fA-F0-9]{2})+$"}`,
}

var (
	schemasOnce sync.Once
	schemas     map[string]*jsonschema.Schema
	schemasErr  error
)

// stixSchemas compiles the OASIS schemas offline: every file is registered
// under its own $id, so the relative $refs between them resolve without a
// network.
func stixSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	schemasOnce.Do(func() {
		c := jsonschema.NewCompiler()
		c.UseLoader(refuseLoader{})
		dir := filepath.Join(testdata, "stix", "schemas")
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
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
			id, _ := doc.(map[string]any)["$id"].(string)
			rel, _ := filepath.Rel(dir, path)
			if want := schemaBase + filepath.ToSlash(rel); id != want {
				// The $refs are relative to this base.
				return &os.PathError{Op: "schema $id", Path: path, Err: fs.ErrInvalid}
			}
			return c.AddResource(id, doc)
		})
		for rel, s := range schemaStandIns {
			if err != nil {
				break
			}
			doc, _ := jsonschema.UnmarshalJSON(strings.NewReader(s))
			err = c.AddResource(schemaBase+rel, doc)
		}
		if err != nil {
			schemasErr = err
			return
		}
		schemas = map[string]*jsonschema.Schema{}
		for typ, rel := range map[string]string{TypeIndicator: "sdos/indicator.json", TypeSighting: "sros/sighting.json"} {
			if schemas[typ], err = c.Compile(schemaBase + rel); err != nil {
				schemasErr = err
				return
			}
		}
	})
	if schemasErr != nil {
		t.Fatalf("compile OASIS schemas: %v", schemasErr)
	}
	return schemas
}

// refuseLoader makes a missing schema fail the test instead of reaching
// for the network.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, &os.PathError{Op: "load schema (offline)", Path: url, Err: fs.ErrNotExist}
}

func validateSchema(t *testing.T, typ string, b []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("emitted invalid JSON: %v", err)
	}
	return stixSchemas(t)[typ].Validate(inst)
}

func TestEmittedObjectsMatchOASISSchemas(t *testing.T) {
	ts := time.Date(2021, 1, 15, 15, 29, 5, 987654321, time.FixedZone("", -7200))
	ind := readTestdata(t, "stix/indicator-domain.json")
	var emitted []Message
	add := func(m Message, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		emitted = append(emitted, m)
	}
	add(NewIndicator("[ipv4-addr:value = '6.6.6.6']", ts))
	add(NewIndicator(`[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f' AND file:name = 'a\'b']`, ts,
		WithID("indicator--42d31a5b-2da0-1bdd-9823-1723a98fc2fb"), WithCreated(ts), WithModified(ts.Add(time.Hour)),
		WithValidUntil(ts.Add(24*time.Hour)), WithUpdate(UpdateEdit),
		WithProperty("name", json.RawMessage(`"x"`)), WithProperty("labels", json.RawMessage(`["c2"]`)),
		WithProperty("x_payload_bin", json.RawMessage(`"dGVzdA=="`)), WithProperty("x_magic_hex", json.RawMessage(`"ffd8"`))))
	add(NewIndicator("[domain-name:value = 'example.com']", ts, WithUpdate(UpdateRemove)))
	add(NewSighting(indicatorID, ts))
	add(NewSighting(indicatorID, ts, WithFirstSeen(ts.Add(-time.Hour)), WithCount(0), WithSightedIndicator(ind),
		WithIndicatorValue("example.com"), WithMatchType(MatchLive), WithSource("zeek"),
		WithContext(json.RawMessage(`{"noisy":false}`)), WithProperty("description", json.RawMessage(`"d"`))))
	add(NewSighting(indicatorID, ts, WithMatchType(MatchRetro), WithContext(json.RawMessage(`"plain text"`))))
	for _, m := range emitted {
		if err := validateSchema(t, m.MessageType(), m.Bytes()); err != nil {
			t.Errorf("%s fails the OASIS schema:\n%v", m.Bytes(), err)
		}
	}

	// The schemas really are enforced: drop what makes an object valid.
	good := emitted[0].Bytes()
	for name, bad := range map[string][]byte{
		"no pattern":      bytes.Replace(good, []byte(`"pattern":`), []byte(`"x_pattern":`), 1),
		"no milliseconds": regexp.MustCompile(`("created":"[^".]+)\.\d{3}Z"`).ReplaceAll(good, []byte(`${1}Z"`)),
		"bad id":          bytes.Replace(good, []byte(`"id":"indicator--`), []byte(`"id":"indicator-`), 1),
	} {
		if bytes.Equal(bad, good) {
			t.Fatalf("%s: mutation did not apply to %s", name, good)
		}
		if err := validateSchema(t, TypeIndicator, bad); err == nil {
			t.Errorf("%s: schema accepted %s", name, bad)
		}
	}
}

func TestTestdataObjectsMatchOASISSchemas(t *testing.T) {
	for file, typ := range map[string]string{
		"stix/indicator-domain.json":        TypeIndicator,
		"stix/indicator-opencti-style.json": TypeIndicator,
		"stix/indicator-remove.json":        TypeIndicator,
		"stix/sighting-zeek.json":           TypeSighting,
		"stix/sighting-vast-retro.json":     TypeSighting,
	} {
		b := readTestdata(t, file)
		if err := validateSchema(t, typ, b); err != nil {
			t.Errorf("%s: %v", file, err)
		}
		if _, err := Decode(b); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}
