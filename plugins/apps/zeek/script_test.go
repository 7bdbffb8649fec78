package zeek

import (
	"strings"
	"testing"
	"time"

	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
	"github.com/threatbus/threatbus/plugins/apps/zeek/zeektest"
)

func readScript(t *testing.T) (*zeektest.Script, string) {
	t.Helper()
	src := string(readFile(t, scriptPath))
	s, err := zeektest.ParseScript(src)
	if err != nil {
		t.Fatalf("threatbus.zeek: %v", err)
	}
	return s, src
}

// TestScriptDeclarations: threatbus.zeek declares the events and the record
// of the protocol, with the argument types and field order of the spec.
// These declarations are what Zeek type-checks the bus's events against.
func TestScriptDeclarations(t *testing.T) {
	s, _ := readScript(t)
	sig := func(fields []zeektest.Field) string {
		var parts []string
		for _, f := range fields {
			parts = append(parts, f.Name+": "+f.Type.String())
		}
		return strings.Join(parts, ", ")
	}
	if got := sig(s.Records["Tenzir::Intelligence"]); got != "ts: time, id: string, intel_type: string, indicator: string, operation: string" {
		t.Errorf("Tenzir::Intelligence: %s", got)
	}
	for name, want := range map[string]string{
		"Tenzir::intel":                     "item: Tenzir::Intelligence",
		"Tenzir::sighting":                  "ts: time, intel_id: string, context: table[string] of any",
		"Tenzir::subscribe":                 "topic: string, snapshot_intel: interval",
		"Tenzir::subscription_acknowledged": "p2p_topic: string",
		"Tenzir::unsubscribe":               "topic: string",
	} {
		params, ok := s.Events[name]
		if !ok {
			t.Errorf("%s is not declared", name)
			continue
		}
		if got := sig(params); got != want {
			t.Errorf("%s(%s), want (%s)", name, got, want)
		}
	}
	// The topics of the script are the bus's.
	for name, want := range map[string]string{
		"Tenzir::management_topic": ManagementTopic,
		"Tenzir::sighting_topic":   SightingTopic,
		"Tenzir::intel_topic":      "stix2/indicator",
		"Tenzir::intel_source":     "threatbus",
	} {
		if got, err := s.String(name); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", name, got, err, want)
		}
	}
	if d, err := s.Interval("Tenzir::snapshot_intel"); err != nil || d != 0 {
		t.Errorf("snapshot_intel %v %v", d, err)
	}
	if n, err := s.Int("Tenzir::noisy_intel_threshold"); err != nil || n != 100 {
		t.Errorf("noisy_intel_threshold %v %v", n, err)
	}
}

// TestScriptBehaviour checks what the script does where the fake cannot
// run it: the listener, the handshake trigger, the meta of inserted items
// and the throttle.
func TestScriptBehaviour(t *testing.T) {
	_, src := readScript(t)
	for _, want := range []string{
		"Cluster::listen_websocket(opts)",
		"event Cluster::websocket_client_added(",
		"event Cluster::websocket_client_lost(",
		"Cluster::publish(management_topic, subscribe, intel_topic, snapshot_intel)",
		"$meta=Intel::MetaData($source=intel_source, $desc=item$id, $url=intel_source)",
		"Intel::insert(it)",
		"Intel::remove(it)",
		"event Intel::match(",
		`context["noisy"] = noisy_intel_threshold > 0 && n > noisy_intel_threshold;`,
		// The throttle's window is one second of network time, kept in the
		// entry: Zeek sweeps &create_expire only every 10 s by default.
		"local second = floor(time_to_double(network_time()));",
		"if ( intel_id !in match_windows || match_windows[intel_id]$second != second )",
		"match_windows[intel_id] = MatchWindow($second=second, $n=0);",
		"Cluster::publish(sighting_topic, sighting, network_time(), intel_id, context)",
		"Cluster::subscribe(p2p_topic)",
		"Cluster::publish(management_topic, unsubscribe, current_p2p_topic)",
		"Cluster::local_node_type() == Cluster::MANAGER",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("threatbus.zeek lacks %s", want)
		}
	}
	// Every intel type the bus sends is one the script maps.
	for _, typ := range intelTypes {
		if !strings.Contains(src, `["`+typ+`"] = Intel::`+typ) {
			t.Errorf("threatbus.zeek does not map %s", typ)
		}
	}
	if !strings.Contains(src, `["SUBNET"] = Intel::SUBNET`) {
		t.Error("threatbus.zeek does not map SUBNET")
	}
}

// TestScriptChecksEvents: the bus's events pass the script's declarations
// the way Zeek checks them; the test vectors do too; wrong ones do not.
func TestScriptChecksEvents(t *testing.T) {
	s, _ := readScript(t)
	item := intelItem{TS: time.Now(), ID: "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06", Type: "ADDR", Indicator: "6.6.6.6", Operation: "ADD"}
	for _, e := range []bj.Event{
		item.event("Tenzir::intel"),
		bj.NewEvent("Tenzir::subscription_acknowledged", bj.String("stix2/indicatorabcdefghij")),
	} {
		if err := s.CheckEvent(e); err != nil {
			t.Errorf("%s: %v", e.Name, err)
		}
	}
	for _, f := range []string{"tenzir-intel-event.json", "tenzir-sighting-event.json", "tenzir-subscribe-event.json"} {
		m, err := bj.Decode(readFile(t, testdata+"/zeek-websocket/"+f))
		if err != nil {
			t.Fatal(err)
		}
		e, err := bj.EventOf(m.(*bj.DataMessage).Data)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CheckEvent(e); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	ts := bj.NewTimestamp(time.Now())
	for name, e := range map[string]bj.Event{
		"undeclared":          bj.NewEvent("Tenzir::hello"),
		"other module":        bj.NewEvent("Other::intel", bj.Vector{ts, bj.String("i"), bj.String("ADDR"), bj.String("x"), bj.String("ADD")}),
		"record too short":    bj.NewEvent("Tenzir::intel", bj.Vector{ts, bj.String("i"), bj.String("ADDR"), bj.String("x")}),
		"record too long":     bj.NewEvent("Tenzir::intel", bj.Vector{ts, bj.String("i"), bj.String("ADDR"), bj.String("x"), bj.String("ADD"), bj.String("y")}),
		"field type":          bj.NewEvent("Tenzir::intel", bj.Vector{bj.String("now"), bj.String("i"), bj.String("ADDR"), bj.String("x"), bj.String("ADD")}),
		"record as table":     bj.NewEvent("Tenzir::intel", bj.Table{}),
		"none in a field":     bj.NewEvent("Tenzir::intel", bj.Vector{ts, bj.None{}, bj.String("ADDR"), bj.String("x"), bj.String("ADD")}),
		"too many args":       bj.NewEvent("Tenzir::unsubscribe", bj.String("a"), bj.String("b")),
		"count for interval":  bj.NewEvent("Tenzir::subscribe", bj.String("stix2/indicator"), bj.Count(30)),
		"vector for table":    bj.NewEvent("Tenzir::sighting", ts, bj.String("i"), bj.Vector{}),
		"integer table key":   bj.NewEvent("Tenzir::sighting", ts, bj.String("i"), bj.Table{{Key: bj.Integer(1), Value: bj.Boolean(true)}}),
		"unknown metadata":    {Name: "Tenzir::unsubscribe", Args: []bj.Value{bj.String("a")}, Metadata: []bj.MetadataEntry{{ID: 7, Value: bj.None{}}}},
		"metadata not a time": {Name: "Tenzir::unsubscribe", Args: []bj.Value{bj.String("a")}, Metadata: []bj.MetadataEntry{{ID: 1, Value: bj.Count(1)}}},
	} {
		if err := s.CheckEvent(e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
