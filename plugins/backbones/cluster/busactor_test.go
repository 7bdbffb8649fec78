package cluster

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/threatbus/threatbus/messages"
)

// TestResentBatchDeliveredOnce: a batch sent again after a lost or late
// ack (the same sender, a number at or below the last delivered) is
// acknowledged and not delivered again, however many messages passed in
// between; batches of other senders are numbered on their own.
func TestResentBatchDeliveredOnce(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	r := &run{b: &Backbone{ClusterName: "c"}, members: map[string]memberView{}, deliver: func(env *messages.Envelope) {
		mu.Lock()
		got = append(got, env.Id)
		mu.Unlock()
	}}
	system := actor.NewActorSystem()
	defer system.Shutdown()
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &busActor{r: r, m: &member{cl: &cluster.Cluster{}}} }))
	send := func(from string, batch uint64, ids ...string) {
		t.Helper()
		envs := make([]*messages.Envelope, len(ids))
		for i, id := range ids {
			envs[i] = &messages.Envelope{Version: messages.EnvelopeVersion_ENVELOPE_VERSION_1, Id: id,
				Topic: messages.TopicIndicator, Type: messages.TypeIndicator, Payload: []byte(`{"type":"indicator"}`)}
		}
		res, err := system.Root.RequestFuture(pid, &Forward{Version: WireVersion_WIRE_VERSION_1, From: from, Batch: batch, Envelopes: envs}, 5*time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ack, ok := res.(*ForwardAck); !ok || ack.Batch != batch || ack.Error != "" {
			t.Fatalf("ack %+v", res)
		}
	}
	send("a", 1, "a-1", "a-2")
	send("a", 1, "a-1", "a-2") // the ack was lost: sent again
	send("b", 1, "b-1")        // another sender numbers on its own
	send("a", 4, "a-3")        // numbers per sender need not be contiguous
	send("a", 4, "a-3")
	send("a", 2, "a-old") // an older batch, already acknowledged
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"a-1", "a-2", "b-1", "a-3"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	if n := r.resent.Load(); n != 4 {
		t.Fatalf("resent counted %d, want 4", n)
	}
}
