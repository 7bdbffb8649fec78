package misp

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/tests/bustest"
)

// TestKafkaIntake produces every attribute file of shared/testdata/misp to
// an in-process Kafka cluster (kfake), as MISP's Kafka publisher would, and
// checks what reaches the bus: the same indicators as over ZeroMQ.
func TestKafkaIntake(t *testing.T) {
	for _, c := range []struct {
		name string
		sasl bool
	}{{"plaintext", false}, {"SCRAM-SHA-256", true}} {
		t.Run(c.name, func(t *testing.T) {
			opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, "misp_attribute")}
			var clientAuth []kgo.Opt
			if c.sasl {
				opts = append(opts, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "threatbus", "k4fka"))
				clientAuth = append(clientAuth, kgo.SASL(scram.Auth{User: "threatbus", Pass: "k4fka"}.AsSha256Mechanism()))
			}
			cluster, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close) // after the bus stopped: the app commits and leaves the group

			var files []string
			for _, f := range testdataFiles(t) {
				if replayWant[f] != nil {
					files = append(files, f)
				} else if _, ok := replayWant[f]; !ok {
					t.Errorf("%s: no expectation in replayWant", f)
				}
			}
			misp := newFakeMISP(t)
			app := newTestApp(t, 0, misp.srv.URL, func(a *App) {
				a.ZMQ.Host = ""
				a.Kafka.Brokers = cluster.ListenAddrs()
				a.Kafka.Group = "threatbus-test"
				a.Kafka.ClientID = "threatbus-misp-test"
				if c.sasl {
					a.Kafka.SASLMechanism, a.Kafka.SASLUsername, a.Kafka.SASLPassword = "SCRAM-SHA-256", "threatbus", config.Secret("k4fka")
				}
			})
			b, _ := startBus(t, app, nil)
			rec := bustest.NewRecorder("indicators")
			b.Subscribe(t, rec, "stix2/indicator")
			// Produced once the bus listens: what the app publishes before
			// the recorder subscribed would not reach it.
			producer, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("misp_attribute")}, clientAuth...)...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), bustest.Timeout)
			defer cancel()
			for _, f := range files {
				if err := producer.ProduceSync(ctx, &kgo.Record{Value: readTestdata(t, f)}).FirstErr(); err != nil {
					t.Fatalf("produce %s: %v", f, err)
				}
			}
			producer.Close()

			rec.WaitLen(t, len(files))
			for i, m := range rec.Messages() {
				checkIndicator(t, files[i], m.Payload, replayWant[files[i]])
			}
			bustest.Eventually(t, "ready", func() bool { return app.Ready() == nil })
			st := app.Stats()
			if st.Intake != "kafka" || !st.Connected || st.LastHeard.IsZero() || st.Received != uint64(len(files)) {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestKafkaUnreachable: brokers that are not there make the app not ready,
// and say so.
func TestKafkaUnreachable(t *testing.T) {
	misp := newFakeMISP(t)
	port := freePort(t)
	app := newTestApp(t, 0, misp.srv.URL, func(a *App) {
		a.ZMQ.Host = ""
		a.Kafka.Brokers = []string{"127.0.0.1:" + strconv.Itoa(port)}
	})
	startBus(t, app, nil)
	bustest.Eventually(t, "the unreachable brokers in Ready", func() bool {
		err := app.Ready()
		return err != nil && strings.Contains(err.Error(), "not connected to MISP's Kafka brokers")
	})
}
