package brokerjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonTree decodes JSON keeping number literals, so that comparing two
// trees compares numbers digit for digit.
func jsonTree(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

// TestVectorsRoundTrip decodes every test vector and encodes it again: the
// result is the same JSON (numbers digit for digit), and byte for byte the
// compact form of the vector wherever the vector has Broker's member order.
func TestVectorsRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "*.json"))
	if err != nil || len(files) < 8 {
		t.Fatalf("test vectors: %v (found %d)", err, len(files))
	}
	for _, path := range files {
		name := filepath.Base(path)
		if strings.HasSuffix(name, ".schema.json") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			in := readVector(t, name)
			m, err := bj.Decode(in)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			out, err := bj.Encode(m)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !reflect.DeepEqual(jsonTree(t, in), jsonTree(t, out)) {
				t.Fatalf("round trip changed the message:\n in: %s\nout: %s", in, out)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, in); err != nil {
				t.Fatal(err)
			}
			// The error vector is a btest baseline printed with sorted
			// keys; Zeek itself writes type, code, context.
			if name == "error-invalid-data.json" {
				if want := `{"type":"error","code":"deserialization_failed","context":"input #1 contained invalid data"}`; string(out) != want {
					t.Fatalf("got  %s\nwant %s", out, want)
				}
				return
			}
			if !bytes.Equal(compact.Bytes(), out) {
				t.Fatalf("not byte for byte:\n in: %s\nout: %s", compact.Bytes(), out)
			}
		})
	}
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	ts, err := time.Parse("2006-01-02T15:04:05.999999999Z", s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestVectorsContents(t *testing.T) {
	decode := func(name string) *bj.DataMessage {
		t.Helper()
		m, err := bj.Decode(readVector(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		dm, ok := m.(*bj.DataMessage)
		if !ok {
			t.Fatalf("%s: got %T, want a data message", name, m)
		}
		return dm
	}
	event := func(name string) (string, bj.Event) {
		t.Helper()
		dm := decode(name)
		e, err := bj.EventOf(dm.Data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return dm.Topic, e
	}

	all := decode("all-types-data-message.json")
	want := bj.Vector{
		bj.Integer(math.MinInt64), bj.Integer(math.MaxInt64),
		bj.Count(0), bj.Count(math.MaxUint64),
		bj.String(`Hello \u003cBroker\u003e!`),
		bj.None{}, bj.Boolean(true), bj.Real(-7.5),
		bj.Timespan(15 * time.Millisecond),
		bj.EnumValue("foo"),
		bj.NewAddress(netip.MustParseAddr("2001:db8::")),
		bj.NewSubnet(netip.MustParsePrefix("255.255.255.0/24")),
		bj.Port{Number: 8080, Protocol: bj.ProtocolTCP},
		bj.Set{bj.String("bar"), bj.String("foo")},
		bj.Table{{Key: bj.String("first-name"), Value: bj.String("John")}, {Key: bj.String("last-name"), Value: bj.String("Doe")}},
	}
	if all.Topic != "/test" || !bj.Equal(all.Data, want) {
		t.Errorf("all types: got %s %#v", all.Topic, all.Data)
	}

	topic, hello := event("hello-event-zeek8.json")
	if topic != "zeek.test" || hello.Name != "hello" || len(hello.Args) != 1 || hello.Args[0] != bj.Count(3) ||
		!hello.HasMetadata || len(hello.Metadata) != 0 {
		t.Errorf("hello: %s %+v", topic, hello)
	}

	topic, intel := event("tenzir-intel-event.json")
	wantIntel := bj.Vector{bj.NewTimestamp(mustTime(t, "2020-01-01T00:00:00Z")),
		bj.String("indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06"), bj.String("DOMAIN"), bj.String("evil.com"), bj.String("ADD")}
	if topic != "stix2/indicatorabcdefghij" || intel.Name != "Tenzir::intel" || len(intel.Args) != 1 ||
		!bj.Equal(intel.Args[0], wantIntel) || intel.HasMetadata {
		t.Errorf("intel: %s %+v", topic, intel)
	}

	topic, sighting := event("tenzir-sighting-event.json")
	ts := bj.NewTimestamp(mustTime(t, "2021-03-01T12:00:05.123Z"))
	wantArgs := bj.Vector{ts, bj.String("indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06"),
		bj.Table{{Key: bj.String("noisy"), Value: bj.Boolean(false)}}}
	if nt, ok := sighting.NetworkTimestamp(); topic != "stix2/sighting" || sighting.Name != "Tenzir::sighting" ||
		!bj.Equal(bj.Vector(sighting.Args), wantArgs) || !ok || !nt.Equal(ts.Time) {
		t.Errorf("sighting: %s %+v", topic, sighting)
	}

	topic, sub := event("tenzir-subscribe-event.json")
	if topic != "threatbus/manage" || sub.Name != "Tenzir::subscribe" ||
		!bj.Equal(bj.Vector(sub.Args), bj.Vector{bj.String("stix2/indicator"), bj.Timespan(30 * 24 * time.Hour)}) {
		t.Errorf("subscribe: %s %+v", topic, sub)
	}

	m, err := bj.Decode(readVector(t, "ack.json"))
	if ack, ok := m.(*bj.Ack); err != nil || !ok || ack.Version != "8.0.0" || !strings.HasSuffix(ack.Endpoint, "-websocket-0") {
		t.Errorf("ack: %#v %v", m, err)
	}
	m, err = bj.Decode(readVector(t, "error-invalid-data.json"))
	if e, ok := m.(*bj.ErrorMessage); err != nil || !ok || *e != (bj.ErrorMessage{Code: "deserialization_failed", Context: "input #1 contained invalid data"}) {
		t.Errorf("error: %#v %v", m, err)
	}
}

func TestTimespans(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		out  string // what Broker would write; "" = same as in
	}{
		{"0s", 0, ""},
		{"0ns", 0, "0s"},
		{"1ns", 1, ""},
		{"1us", time.Microsecond, ""},
		{"1500us", 1500 * time.Microsecond, ""},
		{"15ms", 15 * time.Millisecond, ""},
		{"2592000s", 30 * 24 * time.Hour, ""},
		{"1min", time.Minute, "60s"},
		{"2h", 2 * time.Hour, "7200s"},
		{"1d", 24 * time.Hour, "86400s"},
		{"-5s", -5 * time.Second, ""},
		{"-1500us", -1500 * time.Microsecond, ""},
		{"9223372036854775807ns", math.MaxInt64, ""},
		{"-9223372036854775808ns", math.MinInt64, ""},
		{"106751d", 106751 * 24 * time.Hour, "9223286400s"},
	} {
		got, err := bj.ParseTimespan(c.in)
		if err != nil || time.Duration(got) != c.want {
			t.Errorf("%s: got %v, %v; want %v", c.in, time.Duration(got), err, c.want)
			continue
		}
		out := c.out
		if out == "" {
			out = c.in
		}
		if s := string(bj.AppendTimespan(nil, got)); s != out {
			t.Errorf("%s encodes as %s, want %s", c.in, s, out)
		}
	}
	for _, in := range []string{"", "s", "5", "5 s", "5sec", "1.5s", "+5s", "--5s", "5S", "5m",
		"9223372036854775808ns", "-9223372036854775809ns", "106752d", "99999999999999999999999s"} {
		if got, err := bj.ParseTimespan(in); err == nil {
			t.Errorf("%q: got %v, want an error", in, time.Duration(got))
		}
	}
}

func TestTimestamps(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // RFC 3339 of the instant
		out  string // Broker's form
	}{
		{"2021-03-01T12:00:05.123", "2021-03-01T12:00:05.123Z", "2021-03-01T12:00:05.123"},
		{"2021-03-01T12:00:05", "2021-03-01T12:00:05Z", "2021-03-01T12:00:05.000"},
		{"2021-03-01T12:00:05.5", "2021-03-01T12:00:05.5Z", "2021-03-01T12:00:05.500"},
		{"2021-03-01T12:00:05.123456789123", "2021-03-01T12:00:05.123456789Z", "2021-03-01T12:00:05.123"},
		{"2024-02-29T23:59:59.999", "2024-02-29T23:59:59.999Z", "2024-02-29T23:59:59.999"},
		{"0000-01-01T00:00:00.000", "0000-01-01T00:00:00Z", "0000-01-01T00:00:00.000"},
		{"1969-12-31T23:59:59.999", "1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999"},
	} {
		got, err := bj.ParseTimestamp(c.in)
		if err != nil || !got.Equal(mustTime(t, c.want)) {
			t.Errorf("%s: got %v, %v", c.in, got.Time, err)
			continue
		}
		b, err := bj.AppendValue(nil, got)
		if want := `{"@data-type":"timestamp","data":"` + c.out + `"}`; err != nil || string(b) != want {
			t.Errorf("%s encodes as %s (%v), want %s", c.in, b, err, want)
		}
	}
	for _, in := range []string{"", "2021-03-01", "2021-03-01 12:00:05", "2021-03-01T12:00:05Z", "2021-03-01T12:00:05+01:00",
		"2021-02-30T00:00:00", "2023-02-29T00:00:00", "2021-13-01T00:00:00", "2021-03-01T24:00:00", "2021-03-01T12:60:00",
		"2021-03-01T12:00:60", "2021-03-01T12:00:05.", "2021-03-01T12:00:05.1a", "20210-03-01T12:00:05", "+021-03-01T12:00:05"} {
		if got, err := bj.ParseTimestamp(in); err == nil {
			t.Errorf("%q: got %v, want an error", in, got.Time)
		}
	}
	// A zoned time is written in UTC.
	zoned := time.Date(2021, 3, 1, 14, 0, 5, 123456789, time.FixedZone("", 2*3600))
	if b, _ := bj.AppendValue(nil, bj.Timestamp{Time: zoned}); !strings.Contains(string(b), `"2021-03-01T12:00:05.123"`) {
		t.Errorf("zoned time encodes as %s", b)
	}
	for _, y := range []int{-1, 10000} {
		_, err := bj.AppendValue(nil, bj.NewTimestamp(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)))
		if !errors.Is(err, bj.ErrUnencodable) {
			t.Errorf("year %d: got %v, want ErrUnencodable", y, err)
		}
	}
}

func TestReals(t *testing.T) {
	for _, c := range []struct {
		f    float64
		want string
	}{
		{2, "2.0"}, {-7.5, "-7.5"}, {0, "0.0"}, {math.Copysign(0, -1), "-0.0"}, {0.1, "0.1"},
		{1e21, "1e+21"}, {1e-7, "1e-07"}, {123456789, "123456789.0"}, {5e-324, "5e-324"},
	} {
		b, err := bj.AppendValue(nil, bj.Real(c.f))
		if want := `{"@data-type":"real","data":` + c.want + `}`; err != nil || string(b) != want {
			t.Errorf("%v: got %s (%v), want %s", c.f, b, err, want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := bj.AppendValue(nil, bj.Real(f)); !errors.Is(err, bj.ErrUnencodable) {
			t.Errorf("%v: got %v, want ErrUnencodable", f, err)
		}
	}
	// Broker writes reals with %f, integral ones too, and non-finite ones
	// as nan/inf; an integer literal is taken as a real where one is due.
	for in, want := range map[string]float64{"-7.500000": -7.5, "3": 3, "1e400": math.Inf(1), "inf": math.Inf(1), "-inf": math.Inf(-1)} {
		v, err := bj.DecodeValue([]byte(`{"@data-type":"real","data":` + in + `}`))
		if err != nil || v != bj.Real(want) {
			t.Errorf("%s: got %v, %v", in, v, err)
		}
	}
	for _, in := range []string{"nan", "-nan"} {
		v, err := bj.DecodeValue([]byte(`{"@data-type":"real","data":` + in + `}`))
		if r, ok := v.(bj.Real); err != nil || !ok || !math.IsNaN(float64(r)) {
			t.Errorf("%s: got %v, %v", in, v, err)
		}
	}
}

// TestBrokerQuirks: what Broker's writer produces that strict JSON readers
// refuse.
func TestBrokerQuirks(t *testing.T) {
	for in, want := range map[string]string{
		"\"a\x01b\"":                 "a\x01b",       // raw control character
		`"tab\vvt"`:                  "tab\vvt",      // \v escape
		`"\u00e9\u20ac\ud83d\ude00"`: "é€😀",          // \u escapes, surrogate pair
		`"\ud800x"`:                  "\uFFFDx",      // lone high surrogate
		`"\udc00\u0041"`:             "\uFFFDA",      // lone low surrogate, then A
		`"\ud800\u0041"`:             "\uFFFDA",      // high surrogate followed by a non-surrogate
		"\"\xff\xfe\"":               "\uFFFD\uFFFD", // invalid UTF-8
		`"\/"`:                       "/",
	} {
		v, err := bj.DecodeValue([]byte(`{"@data-type":"string","data":` + in + `}`))
		if err != nil || v != bj.String(want) {
			t.Errorf("%q: got %q, %v; want %q", in, v, err, want)
		}
	}
	// What we write is strict JSON, with the escapes Broker's reader knows
	// wherever they exist.
	b, err := bj.AppendValue(nil, bj.String("q\"b\\s/\b\f\n\r\t\x01\v\x7f<é"))
	if want := `{"@data-type":"string","data":"q\"b\\s/\b\f\n\r\t\u0001\u000b` + "\x7f<é" + `"}`; err != nil || string(b) != want || !json.Valid(b) {
		t.Errorf("got %s, want %s", b, want)
	}
	if !bj.BrokerSafe("a\tb\n") || bj.BrokerSafe("a\x01") || bj.BrokerSafe("a\vb") || bj.BrokerSafe("\xff") {
		t.Error("BrokerSafe is wrong")
	}
}

func TestDecodeErrors(t *testing.T) {
	deep := strings.Repeat(`{"@data-type":"vector","data":[`, bj.MaxDepth) + strings.Repeat(`]}`, bj.MaxDepth)
	for name, c := range map[string]struct {
		in  string
		err error
	}{
		"empty":               {``, bj.ErrSyntax},
		"garbage":             {`nope`, bj.ErrSyntax},
		"trailing":            {`{"type":"ack","endpoint":"e","version":"v"} x`, bj.ErrSyntax},
		"two values":          {`{} {}`, bj.ErrSyntax},
		"unterminated":        {`{"type":"ack`, bj.ErrSyntax},
		"bad escape":          {`{"type":"\q"}`, bj.ErrSyntax},
		"bad number":          {`{"@data-type":"count","data":01}`, bj.ErrSyntax},
		"trailing comma":      {`[1,]`, bj.ErrSyntax},
		"duplicate key":       {`{"type":"ack","type":"error","endpoint":"e","version":"v","code":"c","context":"x"}`, bj.ErrSyntax},
		"too deep":            {deep, bj.ErrSyntax},
		"not an object":       {`[]`, bj.ErrData},
		"no type":             {`{"endpoint":"e","version":"v"}`, bj.ErrData},
		"unknown type":        {`{"type":"hello"}`, bj.ErrData},
		"ack w/o version":     {`{"type":"ack","endpoint":"e"}`, bj.ErrData},
		"error w/o context":   {`{"type":"error","code":"c"}`, bj.ErrData},
		"data w/o topic":      {`{"type":"data-message","@data-type":"none","data":{}}`, bj.ErrData},
		"topic not a string":  {`{"type":"data-message","topic":1,"@data-type":"none","data":{}}`, bj.ErrData},
		"no data":             {`{"type":"data-message","topic":"t","@data-type":"none"}`, bj.ErrData},
		"unknown data type":   {`{"type":"data-message","topic":"t","@data-type":"list","data":[]}`, bj.ErrData},
		"negative count":      {`{"type":"data-message","topic":"t","@data-type":"count","data":-1}`, bj.ErrData},
		"fractional count":    {`{"type":"data-message","topic":"t","@data-type":"count","data":1.0}`, bj.ErrData},
		"exponent count":      {`{"type":"data-message","topic":"t","@data-type":"count","data":1e3}`, bj.ErrData},
		"count overflow":      {`{"type":"data-message","topic":"t","@data-type":"count","data":18446744073709551616}`, bj.ErrData},
		"integer overflow":    {`{"type":"data-message","topic":"t","@data-type":"integer","data":-9223372036854775809}`, bj.ErrData},
		"integer as string":   {`{"type":"data-message","topic":"t","@data-type":"integer","data":"1"}`, bj.ErrData},
		"nan integer":         {`{"type":"data-message","topic":"t","@data-type":"integer","data":nan}`, bj.ErrData},
		"bool as number":      {`{"type":"data-message","topic":"t","@data-type":"boolean","data":1}`, bj.ErrData},
		"bad address":         {`{"type":"data-message","topic":"t","@data-type":"address","data":"1.2.3"}`, bj.ErrData},
		"zoned address":       {`{"type":"data-message","topic":"t","@data-type":"address","data":"fe80::1%eth0"}`, bj.ErrData},
		"bad subnet":          {`{"type":"data-message","topic":"t","@data-type":"subnet","data":"10.0.0.0/33"}`, bj.ErrData},
		"bad port":            {`{"type":"data-message","topic":"t","@data-type":"port","data":"80/sctp"}`, bj.ErrData},
		"port overflow":       {`{"type":"data-message","topic":"t","@data-type":"port","data":"65536/tcp"}`, bj.ErrData},
		"bad timespan":        {`{"type":"data-message","topic":"t","@data-type":"timespan","data":"5 s"}`, bj.ErrData},
		"bad timestamp":       {`{"type":"data-message","topic":"t","@data-type":"timestamp","data":"2021-03-01T12:00:05Z"}`, bj.ErrData},
		"vector of numbers":   {`{"type":"data-message","topic":"t","@data-type":"vector","data":[1]}`, bj.ErrData},
		"table entry w/o key": {`{"type":"data-message","topic":"t","@data-type":"table","data":[{"value":{"@data-type":"none","data":{}}}]}`, bj.ErrData},
		"table of arrays":     {`{"type":"data-message","topic":"t","@data-type":"table","data":[[]]}`, bj.ErrData},
	} {
		_, err := bj.Decode([]byte(c.in))
		if !errors.Is(err, c.err) {
			t.Errorf("%s: got %v, want %v", name, err, c.err)
		}
	}
	// Errors name where the problem is.
	_, err := bj.Decode([]byte(`{"type":"data-message","topic":"t","@data-type":"vector","data":[{"@data-type":"none","data":{}},{"@data-type":"table","data":[{"key":{"@data-type":"count","data":-3},"value":{"@data-type":"none","data":{}}}]}]}`))
	if err == nil || !strings.Contains(err.Error(), "data[1].data[0].key.data:") {
		t.Errorf("error without path: %v", err)
	}
	// Members besides those a type needs are ignored.
	v, err := bj.DecodeValue([]byte(`{"x":[1,{"y":null}],"data":true,"@data-type":"boolean"}`))
	if err != nil || v != bj.Boolean(true) {
		t.Errorf("got %v, %v", v, err)
	}
}

func TestEventFraming(t *testing.T) {
	for name, v := range map[string]bj.Value{
		"not a vector":      bj.String("x"),
		"two elements":      bj.Vector{bj.Count(1), bj.Count(1)},
		"wrong version":     bj.Vector{bj.Count(2), bj.Count(1), bj.Vector{bj.String("e"), bj.Vector{}}},
		"log write":         bj.Vector{bj.Count(1), bj.Count(3), bj.Vector{bj.String("e"), bj.Vector{}}},
		"version integer":   bj.Vector{bj.Integer(1), bj.Count(1), bj.Vector{bj.String("e"), bj.Vector{}}},
		"content too short": bj.Vector{bj.Count(1), bj.Count(1), bj.Vector{bj.String("e")}},
		"content too long":  bj.Vector{bj.Count(1), bj.Count(1), bj.Vector{bj.String("e"), bj.Vector{}, bj.Vector{}, bj.Vector{}}},
		"name not a string": bj.Vector{bj.Count(1), bj.Count(1), bj.Vector{bj.EnumValue("e"), bj.Vector{}}},
		"args not a vector": bj.Vector{bj.Count(1), bj.Count(1), bj.Vector{bj.String("e"), bj.Set{}}},
		"metadata a table":  bj.Vector{bj.Count(1), bj.Count(1), bj.Vector{bj.String("e"), bj.Vector{}, bj.Table{}}},
		"metadata pair":     bj.Vector{bj.Count(1), bj.Count(1), bj.Vector{bj.String("e"), bj.Vector{}, bj.Vector{bj.Vector{bj.Count(1)}}}},
		"metadata id":       bj.Vector{bj.Count(1), bj.Count(1), bj.Vector{bj.String("e"), bj.Vector{}, bj.Vector{bj.Vector{bj.String("1"), bj.None{}}}}},
	} {
		if _, err := bj.EventOf(v); !errors.Is(err, bj.ErrData) {
			t.Errorf("%s: got %v, want ErrData", name, err)
		}
	}
	// With and without metadata.
	for _, e := range []bj.Event{
		bj.NewEvent("Tenzir::subscription_acknowledged", bj.String("stix2/indicatorabcdefghij")),
		{Name: "hello", Args: []bj.Value{bj.Count(3)}, HasMetadata: true},
		{Name: "n", HasMetadata: true, Metadata: []bj.MetadataEntry{{ID: bj.MetadataNetworkTimestamp, Value: bj.NewTimestamp(time.UnixMilli(1e12))}}},
	} {
		b, err := bj.EncodeEvent("t", e)
		if err != nil {
			t.Fatal(err)
		}
		m, err := bj.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := bj.EventOf(m.(*bj.DataMessage).Data)
		if err != nil || !bj.Equal(got.Value(), e.Value()) || got.HasMetadata != e.HasMetadata {
			t.Errorf("%s: got %+v, %v", b, got, err)
		}
	}
	if b, _ := bj.EncodeEvent("zeek.test", bj.Event{Name: "hello", Args: []bj.Value{bj.Count(3)}, HasMetadata: true}); string(b) != string(bytes.TrimSpace(readVector(t, "hello-event-zeek8.json"))) {
		t.Errorf("hello event: %s", b)
	}
}

func TestTopics(t *testing.T) {
	in := []string{"threatbus/manage", "stix2/sighting", "", "q\"\\"}
	out, err := bj.DecodeTopics(bj.EncodeTopics(in))
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Errorf("got %q, %v", out, err)
	}
	if b := bj.EncodeTopics(nil); string(b) != "[]" {
		t.Errorf("no topics: %s", b)
	}
	for _, bad := range []string{`{}`, `["a",1]`, `"a"`, `[`} {
		if _, err := bj.DecodeTopics([]byte(bad)); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

// TestPropertyRoundTrip: random values of every type, nested, encode to
// strict JSON and decode to themselves; so do events with and without
// metadata and acks and errors with arbitrary strings.
func TestPropertyRoundTrip(t *testing.T) {
	g := newGen(1, false)
	for i := range 3000 {
		v := g.value(0)
		b, err := bj.EncodeData("topic/"+g.str(), v)
		if err != nil {
			t.Fatalf("#%d: encode %#v: %v", i, v, err)
		}
		if !json.Valid(b) {
			t.Fatalf("#%d: not strict JSON: %s", i, b)
		}
		m, err := bj.Decode(b)
		if err != nil {
			t.Fatalf("#%d: decode %s: %v", i, b, err)
		}
		if got := m.(*bj.DataMessage).Data; !bj.Equal(got, v) {
			t.Fatalf("#%d: round trip changed the value:\nwant %#v\n got %#v\n%s", i, v, got, b)
		}
		b2, _ := bj.Encode(m)
		if !bytes.Equal(b, b2) {
			t.Fatalf("#%d: encoding not stable:\n%s\n%s", i, b, b2)
		}

		e := g.event()
		b, err = bj.EncodeEvent("t", e)
		if err != nil {
			t.Fatalf("#%d: encode event: %v", i, err)
		}
		m, err = bj.Decode(b)
		if err != nil {
			t.Fatalf("#%d: decode event %s: %v", i, b, err)
		}
		got, err := bj.EventOf(m.(*bj.DataMessage).Data)
		if err != nil || got.Name != e.Name || got.HasMetadata != (e.HasMetadata || len(e.Metadata) > 0) || !bj.Equal(got.Value(), e.Value()) {
			t.Fatalf("#%d: event round trip: %v\nwant %+v\n got %+v", i, err, e, got)
		}

		for _, msg := range []bj.Message{&bj.Ack{Endpoint: g.str(), Version: g.str()}, &bj.ErrorMessage{Code: g.str(), Context: g.str()}} {
			b, err := bj.Encode(msg)
			if err != nil || !json.Valid(b) {
				t.Fatalf("#%d: %s: %v", i, b, err)
			}
			back, err := bj.Decode(b)
			if err != nil || !reflect.DeepEqual(back, msg) {
				t.Fatalf("#%d: %s: got %#v, %v", i, b, back, err)
			}
		}
	}
}

func TestEncodeRefusesWhatCannotBeWritten(t *testing.T) {
	for name, v := range map[string]bj.Value{
		"nil in a vector": bj.Vector{nil},
		"invalid address": bj.Address{},
		"zoned address":   bj.NewAddress(netip.MustParseAddr("fe80::1%eth0")),
		"invalid subnet":  bj.Subnet{},
		"NaN in a table":  bj.Table{{Key: bj.String("k"), Value: bj.Real(math.NaN())}},
	} {
		if _, err := bj.EncodeData("t", v); !errors.Is(err, bj.ErrUnencodable) {
			t.Errorf("%s: got %v, want ErrUnencodable", name, err)
		}
	}
	if _, err := bj.EncodeData("t", nil); !errors.Is(err, bj.ErrUnencodable) {
		t.Errorf("nil: got %v", err)
	}
}
