package zmqe2e

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/apps/zeek"
	"github.com/threatbus/threatbus/plugins/apps/zeek/zeektest"
	"github.com/threatbus/threatbus/plugins/apps/zmq"
	"github.com/threatbus/threatbus/plugins/apps/zmq/zmqclient"
	"github.com/threatbus/threatbus/plugins/backbones/inmem"
	"github.com/threatbus/threatbus/tests/bustest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottleWithLogger.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	)
}

const testdata = "../../../../../../shared/testdata"

// TestSightingReachesZmqSubscriber: Zeek reports a match; an app that
// subscribed to stix2/sighting through the zmq app receives it as a valid
// STIX Sighting on its private topic.
func TestSightingReachesZmqSubscriber(t *testing.T) {
	z := zeektest.Start(t, zeektest.Options{
		Script: "../../threatbus.zeek",
		Schema: testdata + "/zeek-websocket/v1-broker-out.schema.json",
	})
	za := zeek.New()
	za.Endpoints = []string{z.URL()}
	za.ReconnectMin, za.ReconnectMax, za.StatsInterval = config.Duration(10*time.Millisecond), config.Duration(100*time.Millisecond), 0
	if err := za.Init(); err != nil {
		t.Fatal(err)
	}
	zm := zmq.New()
	zm.Manage, zm.Pub, zm.Sub, zm.StatsInterval = 0, 0, 0, 0
	if err := zm.Init(); err != nil {
		t.Fatal(err)
	}
	bustest.Start(t, &inmem.Backbone{}, bustest.Options{Apps: []config.Instance{
		{Kind: plugins.KindApp, Name: "zeek", Plugin: za},
		{Kind: plugins.KindApp, Name: "zmq", Plugin: zm},
	}})
	bustest.Eventually(t, "both apps to be ready", func() bool { return za.Ready() == nil && zm.Ready() == nil })
	z.Wait(t, "the Zeek to be subscribed", z.Acknowledged)

	manage, _, _ := zm.Ports()
	reply, err := zmqclient.Subscribe(fmt.Sprintf("127.0.0.1:%d", manage), []string{"stix2/sighting"}, 0, zmqclient.Timeout)
	if err != nil {
		t.Fatalf("zmq subscribe: %v", err)
	}
	recv, err := zmqclient.NewReceiver("127.0.0.1", reply.PubPort, reply.Topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()

	const id = "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06"
	seen := time.Date(2021, 3, 1, 12, 0, 5, 123e6, time.UTC)
	// The SUB socket may join after the first sighting is out (zmq's slow
	// joiner): report until one arrives.
	deadline := time.Now().Add(bustest.Timeout)
	for {
		z.Match(id, seen, true)
		topic, payload, err := recv.Receive(200 * time.Millisecond)
		if err == nil {
			if want := reply.Topic + "sighting"; topic != want { // "<p2p><suffix>", shared/specs/zmq-app.md
				t.Errorf("zmq topic %q, want %q", topic, want)
			}
			s, err := stix.DecodeSighting(payload)
			if err != nil {
				t.Fatalf("not a STIX sighting: %v\n%s", err, payload)
			}
			if s.SightingOfRef != id || !s.LastSeen.Equal(seen) || s.Source != "zeek" || string(s.Context) != `{"noisy":true}` {
				t.Errorf("got %s", payload)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sighting through zmq within %s: %v", bustest.Timeout, err)
		}
	}
}
