package zeektest_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
	"github.com/threatbus/threatbus/plugins/apps/zeek/zeektest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, o zeektest.Options) *zeektest.Server {
	o.Script = "../threatbus.zeek"
	o.Schema = "../../../../../shared/testdata/zeek-websocket/v1-broker-out.schema.json"
	return zeektest.Start(t, o)
}

// client is a bare WebSocket client.
type client struct {
	t    *testing.T
	conn *websocket.Conn
}

func dial(t *testing.T, url string, header http.Header) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), zeektest.Timeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return &client{t: t, conn: c}
}

func (c *client) send(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), zeektest.Timeout)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) recv() bj.Message {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), zeektest.Timeout)
	defer cancel()
	_, b, err := c.conn.Read(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	m, err := bj.Decode(b)
	if err != nil {
		c.t.Fatalf("%s: %v", b, err)
	}
	return m
}

func (c *client) wantError(code, context string) {
	c.t.Helper()
	m := c.recv()
	if e, ok := m.(*bj.ErrorMessage); !ok || e.Code != code || e.Context != context {
		c.t.Fatalf("got %#v, want error %s: %s", m, code, context)
	}
}

// TestRefusals: the server refuses what Zeek refuses, with Zeek's errors.
func TestRefusals(t *testing.T) {
	z := start(t, zeektest.Options{})

	wrong := dial(t, z.URL()+"/v2/json", nil)
	wrong.wantError("invalid_uri", "Invalid URI - use /v1/messages/json")
	badName := dial(t, z.URL()+"/v1/messages/json", http.Header{"X-Application-Name": {"thread bus"}})
	badName.wantError("invalid_application_name", "Invalid X-Application-Name")
	notArray := dial(t, z.URL()+"/v1/messages/json", nil)
	notArray.send(`{"topics":["a"]}`)
	notArray.wantError("deserialization_failed", "subscriptions not an array")
	notString := dial(t, z.URL()+"/v1/messages/json", nil)
	notString.send(`["a",1]`)
	notString.wantError("deserialization_failed", "individual subscription not a string")

	c := dial(t, z.URL()+"/v1/messages/json", nil)
	c.send(`["threatbus/manage"]`)
	if ack, ok := c.recv().(*bj.Ack); !ok || ack.Version != "8.0.0" {
		t.Fatalf("no ack")
	}
	// The script asks this bus for intel at once.
	if m, ok := c.recv().(*bj.DataMessage); !ok || m.Topic != "threatbus/manage" {
		t.Fatalf("no subscribe: %#v", m)
	}
	for _, bad := range []struct{ msg, context string }{
		{`{"type":"data-message"`, "failed to decode JSON object"},
		{`{"type":"ack","endpoint":"e","version":"v"}`, "failed to decode JSON object"},
		{`{"type":"data-message","topic":"","@data-type":"none","data":{}}`, "no topic in top-level JSON object"},
		{`{"type":"data-message","topic":"t","@data-type":"count","data":1}`, "failed to create Zeek event"},
		{mustEvent(t, "x", bj.NewEvent("Tenzir::hello")), "failed to create Zeek event"},
		{mustEvent(t, "x", bj.NewEvent("Tenzir::unsubscribe", bj.Count(1))), "failed to create Zeek event"},
		// CAF's JSON reader, Zeek's, has no \u escapes.
		{mustEvent(t, "x", bj.NewEvent("Tenzir::unsubscribe", bj.String("a\x01"))), "failed to decode JSON object"},
	} {
		c.send(bad.msg)
		c.wantError("deserialization_failed", bad.context)
	}
	if n := len(z.Errors()); n != 11 {
		t.Errorf("%d errors sent, want 11", n)
	}
	// The truncated one and the ack fail Broker's schema too.
	if n := len(z.Invalid()); n != 2 {
		t.Errorf("%d messages fail the schema, want 2: %q", n, z.Invalid())
	}
}

func mustEvent(t *testing.T, topic string, e bj.Event) string {
	b, err := bj.EncodeEvent(topic, e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDelivery: events go to the clients subscribed to a prefix of their
// topic, not back to their sender, and into the script when it holds the
// topic.
func TestDelivery(t *testing.T) {
	z := start(t, zeektest.Options{Metadata: true})
	bus := dial(t, z.URL()+"/v1/messages/json", nil)
	bus.send(`["threatbus/manage","stix2/sighting"]`)
	bus.recv() // ack
	sub := bus.recv().(*bj.DataMessage)
	ev, err := bj.EventOf(sub.Data)
	if err != nil || ev.Name != "Tenzir::subscribe" || !ev.HasMetadata || len(ev.Metadata) != 1 {
		t.Fatalf("subscribe: %+v %v", ev, err)
	}
	other := dial(t, z.URL()+"/v1/messages/json", nil)
	other.send(`["stix2/"]`)
	other.recv() // ack; not a bus: no subscribe

	bus.send(mustEvent(t, "threatbus/manage", bj.NewEvent("Tenzir::subscription_acknowledged", bj.String("stix2/indicatorabcdefghij"))))
	z.Wait(t, "the acknowledgement", z.Acknowledged)
	if z.P2P() != "stix2/indicatorabcdefghij" {
		t.Fatalf("p2p %q", z.P2P())
	}
	intel := bj.NewEvent("Tenzir::intel", bj.Vector{bj.NewTimestamp(time.Unix(0, 0)), bj.String("indicator--x"), bj.String("DOMAIN"), bj.String("Evil.COM"), bj.String("ADD")})
	bus.send(mustEvent(t, "stix2/indicatorabcdefghij", intel))
	// The other client subscribed to stix2/: it sees the intel, the bus
	// (its sender) does not.
	if m := other.recv().(*bj.DataMessage); m.Topic != "stix2/indicatorabcdefghij" {
		t.Errorf("other got %s", m.Topic)
	}
	z.Wait(t, "the intel", func() bool { return len(z.Intel()) == 1 })
	if id, ok := z.Has("DOMAIN", "evil.com"); !ok || id != "indicator--x" {
		t.Error("not in the store")
	}
	z.Match("indicator--x", time.Unix(1, 0), false)
	for _, c := range []*client{bus, other} {
		m := c.recv().(*bj.DataMessage)
		if e, _ := bj.EventOf(m.Data); m.Topic != "stix2/sighting" || e.Name != "Tenzir::sighting" {
			t.Errorf("got %s %s", m.Topic, e.Name)
		}
	}
	// Intel on a topic the script does not hold is not handled.
	bus.send(mustEvent(t, "elsewhere", intel))
	other2 := dial(t, z.URL()+"/v1/messages/json", nil) // a round trip: the server handled what came before
	other2.send(`[]`)
	other2.recv()
	if n := len(z.Intel()); n != 1 {
		t.Errorf("%d intel events, want 1", n)
	}
	if !strings.HasPrefix(z.URL(), "ws://127.0.0.1:") {
		t.Errorf("URL %s", z.URL())
	}
}
