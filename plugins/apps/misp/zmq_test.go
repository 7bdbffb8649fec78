package misp

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/tests/bustest"
)

// wantIndicator is the indicator a testdata file must become, written out
// by hand from the spec's mapping table.
type wantIndicator struct {
	id      string
	pattern string
	ts      string // created = modified = valid_from
	update  string // x_threatbus_update, "" for absent
}

// replayWant has an entry for every file of shared/testdata/misp: a new
// file fails the replay test until its expectation is written here. nil
// means the file is a heartbeat, not data.
var replayWant = map[string]*wantIndicator{
	"attribute-add-compound-domain-ip.json": {
		id:      "indicator--8c5e3c74-2e30-4f20-9c73-4f3f2d9e1033",
		pattern: "[domain-name:value = 'evil.example'] AND [ipv4-addr:value = '198.51.100.7']",
		ts:      "2021-03-01T11:53:55.000Z",
	},
	"attribute-add-domain.json": {
		id:      "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06",
		pattern: "[domain-name:value = 'example.com']",
		ts:      "2021-03-01T11:53:55.000Z",
	},
	"attribute-add-ipv6.json": {
		id:      "indicator--6a3c1a52-0c1e-4d0e-9a51-2f1d0b7c9e11",
		pattern: "[ipv6-addr:value = '2001:db8::1']",
		ts:      "2021-03-01T11:53:55.000Z",
	},
	"attribute-add-sha256.json": {
		id:      "indicator--7b4d2b63-1d2f-4e1f-8b62-3e2e1c8d0f22",
		pattern: "[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
		ts:      "2021-03-01T11:53:55.000Z",
	},
	"attribute-add-url-numeric-timestamp.json": {
		id:      "indicator--9d6f4d85-3f41-4031-8d84-5a4a3eaf2144",
		pattern: "[url:value = 'https://evil.example/path?q=1']",
		ts:      "2021-03-01T11:55:00.000Z",
	},
	"attribute-delete-domain-no-event.json": {
		id:      "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06",
		pattern: "[domain-name:value = 'example.com']",
		ts:      "2021-03-01T11:53:55.000Z",
		update:  "REMOVE",
	},
	"attribute-edit-ip-src.json": {
		id:      "indicator--5f7b2284-bdd8-4ef4-b457-032ac0a82f02",
		pattern: "[ipv4-addr:value = '6.6.6.6']",
		ts:      "2020-10-05T13:58:55.000Z",
		update:  "EDIT",
	},
	"attribute-edit-to-ids-false.json": {
		id:      "indicator--5f7b2284-bdd8-4ef4-b457-032ac0a82f02",
		pattern: "[ipv4-addr:value = '6.6.6.6']",
		ts:      "2020-10-05T14:59:59.000Z",
		update:  "REMOVE",
	},
	"attribute-soft-delete-domain.json": {
		id:      "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06",
		pattern: "[domain-name:value = 'example.com']",
		ts:      "2021-03-01T12:00:00.000Z",
		update:  "REMOVE",
	},
	heartbeatFile: nil,
}

// checkIndicator compares an indicator with what it must be, property by
// property, and checks that it decodes and its pattern parses.
func checkIndicator(t testing.TB, file string, payload []byte, want *wantIndicator) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	exp := map[string]any{
		"type":            "indicator",
		"spec_version":    "2.1",
		"id":              want.id,
		"created":         want.ts,
		"modified":        want.ts,
		"valid_from":      want.ts,
		"pattern":         want.pattern,
		"pattern_type":    "stix",
		"pattern_version": "2.1",
	}
	if want.update != "" {
		exp["x_threatbus_update"] = want.update
	}
	for k, v := range exp {
		if got[k] != v {
			t.Errorf("%s: %s = %v, want %v", file, k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := exp[k]; !ok {
			t.Errorf("%s: unexpected property %s = %v", file, k, got[k])
		}
	}
	ind, err := stix.DecodeIndicator(payload)
	if err != nil {
		t.Fatalf("%s: not a valid indicator: %v", file, err)
	}
	if _, err := stix.Parse(ind.Pattern); err != nil {
		t.Errorf("%s: pattern does not parse: %v", file, err)
	}
}

// TestZMQReplay plays every file of shared/testdata/misp through a
// ZeroMQ PUB socket, as MISP would, and checks what reaches the bus.
func TestZMQReplay(t *testing.T) {
	misp := newFakeMISP(t)
	pub := newPublisher(t, 0, nil)
	app := newTestApp(t, pub.port, misp.srv.URL, nil)
	b, _ := startBus(t, app, nil)
	rec := bustest.NewRecorder("indicators")
	b.Subscribe(t, rec, "stix2/indicator")
	pub.awaitHeartbeat(app)
	bustest.Eventually(t, "the app to be ready", func() bool { return app.Ready() == nil })

	n := 0
	for _, file := range testdataFiles(t) {
		want, ok := replayWant[file]
		if !ok {
			t.Errorf("%s: no expectation in replayWant; add one", file)
			continue
		}
		data := readTestdata(t, file)
		if want == nil { // MISP's heartbeat: liveness, not data
			before := app.Stats()
			pub.send(topicSelf, data)
			bustest.Eventually(t, "the heartbeat to be counted", func() bool { return app.Stats().Heartbeats > before.Heartbeats })
			after := app.Stats()
			if after.Received != before.Received || rec.Len() != n {
				t.Errorf("%s: a heartbeat was taken for data (received %d → %d)", file, before.Received, after.Received)
			}
			if !after.LastHeard.After(before.LastHeard) {
				t.Errorf("%s: last heard %v not after %v", file, after.LastHeard, before.LastHeard)
			}
			continue
		}
		pub.send(topicAttribute, data)
		n++
		rec.WaitLen(t, n)
		checkIndicator(t, file, rec.Messages()[n-1].Payload, want)
	}
	st := app.Stats()
	if st.Received != uint64(n) || len(nonZero(st.Skipped)) != 0 {
		t.Errorf("stats: received %d (want %d), skipped %v", st.Received, n, st.Skipped)
	}
	if got := st.Published["add"] + st.Published["edit"] + st.Published["remove"]; got != uint64(n) {
		t.Errorf("published %v, want %d in all", st.Published, n)
	}
	rec.Quiet(t, n, 50*time.Millisecond)
}

func nonZero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// TestZMQSkipsAndFilters checks, over the real socket, that what must not
// become an indicator does not, and is counted by cause.
func TestZMQSkipsAndFilters(t *testing.T) {
	misp := newFakeMISP(t)
	pub := newPublisher(t, 0, nil)
	app := newTestApp(t, pub.port, misp.srv.URL, func(a *App) {
		a.Filter = []Filter{{Types: []string{"domain"}, Tags: []string{"TLP:RED"}}}
	})
	b, _ := startBus(t, app, nil)
	rec := bustest.NewRecorder("indicators")
	b.Subscribe(t, rec, "stix2/indicator")
	pub.awaitHeartbeat(app)

	domain := readTestdata(t, "attribute-add-domain.json")
	var msg map[string]any
	if err := json.Unmarshal(domain, &msg); err != nil {
		t.Fatal(err)
	}
	tagged := func(tags ...string) []byte {
		var list []any
		for _, tg := range tags {
			list = append(list, map[string]any{"id": "9", "name": tg})
		}
		msg["Attribute"].(map[string]any)["Tag"] = list
		out, _ := json.Marshal(msg)
		return out
	}
	pub.send(topicAttribute, tagged("tlp:green"))                                                                                                                             // filtered: tag
	pub.send(topicAttribute, readTestdata(t, "attribute-add-ipv6.json"))                                                                                                      // filtered: type
	pub.send(topicAttribute, []byte(`{"status": "not an attribute"}`))                                                                                                        // malformed
	pub.send(topicAttribute, []byte(`{"Attribute": {"type": "comment", "value": "x", "to_ids": true, "uuid": "8c5e3c74-2e30-4f20-9c73-4f3f2d9e1034"}, "action": "publish"}`)) // unknown action
	pub.send(topicAttribute, tagged("tlp:red"))                                                                                                                               // passes
	rec.WaitLen(t, 1)
	checkIndicator(t, "tagged domain", rec.Messages()[0].Payload, replayWant["attribute-add-domain.json"])
	// The hard delete has no Event and no tags: it follows the decision
	// made for the attribute when it was added.
	pub.send(topicAttribute, readTestdata(t, "attribute-delete-domain-no-event.json"))
	rec.WaitLen(t, 2)
	checkIndicator(t, "delete", rec.Messages()[1].Payload, replayWant["attribute-delete-domain-no-event.json"])
	want := map[string]uint64{causeFiltered: 2, causeMalformed: 1, causeUnknownAction: 1}
	bustest.Eventually(t, "the skips to be counted", func() bool { return reflect.DeepEqual(nonZero(app.Stats().Skipped), want) })
	rec.Quiet(t, 2, 50*time.Millisecond)
}

// TestZMQLiveness follows the connection through MISP going away and
// coming back on the same port (libzmq reconnects), and MISP falling
// silent.
func TestZMQLiveness(t *testing.T) {
	misp := newFakeMISP(t)
	pub := newPublisher(t, 0, nil)
	port := pub.port
	app := newTestApp(t, port, misp.srv.URL, func(a *App) { a.ZMQ.HeartbeatTimeout = config.Duration(400 * time.Millisecond) })
	if err := app.Ready(); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("before Run: Ready() = %v", err)
	}
	startBus(t, app, nil)
	pub.awaitHeartbeat(app)
	bustest.Eventually(t, "ready", func() bool { return app.Ready() == nil })
	heard := app.Stats().LastHeard

	pub.close() // MISP stops
	bustest.Eventually(t, "not ready after MISP left", func() bool {
		err := app.Ready()
		return err != nil && strings.Contains(err.Error(), "not connected") &&
			strings.Contains(err.Error(), heard.UTC().Format(time.RFC3339))
	})
	if app.Stats().Connected {
		t.Error("Stats().Connected after MISP left")
	}

	pub = newPublisher(t, port, nil) // MISP is back
	bustest.Eventually(t, "reconnected", func() bool { return app.Stats().Connected })
	pub.awaitHeartbeat(app)
	bustest.Eventually(t, "ready again", func() bool { return app.Ready() == nil })

	// Silence beyond heartbeat_timeout: connected, but not ready.
	bustest.Eventually(t, "not ready while MISP is silent", func() bool {
		err := app.Ready()
		return err != nil && strings.Contains(err.Error(), "nothing heard from MISP")
	})
	pub.send(topicSelf, readTestdata(t, heartbeatFile))
	bustest.Eventually(t, "ready after a heartbeat", func() bool { return app.Ready() == nil })
}

// TestZMQPlainAuth connects with ZMQ PLAIN credentials, and reports a
// refusal of wrong ones.
func TestZMQPlainAuth(t *testing.T) {
	if err := zmq4.AuthStart(); err != nil {
		t.Fatal(err)
	}
	defer zmq4.AuthStop()
	zmq4.AuthPlainAdd("misp", "threatbus", "s3cret")
	secure := func(s *zmq4.Socket) error { return s.ServerAuthPlain("misp") }
	// The ZAP handler serves the default context: the PUB socket lives there.
	pub := newPublisherIn(t, nil, 0, secure)
	misp := newFakeMISP(t)

	t.Run("accepted", func(t *testing.T) {
		app := newTestApp(t, pub.port, misp.srv.URL, func(a *App) { a.ZMQ.Username, a.ZMQ.Password = "threatbus", "s3cret" })
		b, _ := startBus(t, app, nil)
		rec := bustest.NewRecorder("indicators")
		b.Subscribe(t, rec, "stix2/indicator")
		pub.awaitHeartbeat(app)
		pub.send(topicAttribute, readTestdata(t, "attribute-add-domain.json"))
		rec.WaitLen(t, 1)
		checkIndicator(t, "attribute-add-domain.json", rec.Messages()[0].Payload, replayWant["attribute-add-domain.json"])
		bustest.Eventually(t, "ready", func() bool { return app.Ready() == nil })
	})
	t.Run("refused", func(t *testing.T) {
		app := newTestApp(t, pub.port, misp.srv.URL, func(a *App) { a.ZMQ.Username, a.ZMQ.Password = "threatbus", "wrong" })
		startBus(t, app, nil)
		bustest.Eventually(t, "the refusal to be reported", func() bool {
			err := app.Ready()
			return err != nil && strings.Contains(err.Error(), "refused the PLAIN credentials")
		})
		pub.send(topicSelf, readTestdata(t, heartbeatFile))
		if st := app.Stats(); st.Heartbeats != 0 || st.Connected {
			t.Errorf("refused app: %+v", st)
		}
	})
}
