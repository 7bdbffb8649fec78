package rabbitmq_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins/backbones/rabbitmq"
	"github.com/threatbus/threatbus/tests/bustest"
)

// python is Debian's interpreter, which has python3-pika (the first python3
// on PATH may be another).
const python = "/usr/bin/python3"

func pika(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(python, append([]string{"testdata/pika_compat.py"}, args...)...)
	cmd.Env = append(os.Environ(), urlEnv+"="+brokerURL())
	return cmd
}

func decodeLines(t *testing.T, out []byte) [][]byte {
	t.Helper()
	var bodies [][]byte
	for _, line := range strings.Fields(string(out)) {
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			t.Fatalf("pika output %q: %v", line, err)
		}
		bodies = append(bodies, b)
	}
	return bodies
}

// TestPythonCompatibility: a Python Threat Bus (pika, declaring, publishing
// and consuming exactly as the original plugin) and a Go bus on one
// exchange exchange messages in both directions, bodies byte for byte, and
// declare each other's queues without a conflict.
func TestPythonCompatibility(t *testing.T) {
	if out, err := exec.Command(python, "-c", "import pika").CombinedOutput(); err != nil {
		t.Fatalf("python3-pika is needed (apt-get install python3-pika): %v\n%s", err, out)
	}
	n := newNames(t)
	a := broker(t)
	pyQueue := "threatbus." + randomName("py-")
	t.Cleanup(func() { n.remove(a, pyQueue) })

	// A host migrating from the original keeps its queue: the original
	// declared it first, the Go bus re-declares it with the same settings.
	goQueueArgs := []string{n.exchange, n.queue(), "true", "false", "false", "true", "5000"}
	if out, err := pika(t, append([]string{"declare"}, goQueueArgs...)...).CombinedOutput(); err != nil {
		t.Fatalf("pika declare: %v\n%s", err, out)
	}
	b := newBackbone(t, n, func(b *rabbitmq.Backbone) { b.Queue.MaxItems = 5000 })
	bus := bustest.Start(t, b, bustest.Options{})
	rec := bustest.NewRecorder("all")
	bus.Subscribe(t, rec, "")
	// And the other way round: the original accepts the Go bus's queue.
	if out, err := pika(t, append([]string{"declare"}, goQueueArgs...)...).CombinedOutput(); err != nil {
		t.Fatalf("pika re-declaring the Go bus's queue: %v\n%s", err, out)
	}
	// (RabbitMQ does compare: another x-max-length is refused.)
	other := append([]string{"declare"}, goQueueArgs...)
	other[len(other)-1] = "4999"
	if out, err := pika(t, other...).CombinedOutput(); err == nil || !strings.Contains(string(out), "PRECONDITION_FAILED") {
		t.Fatalf("pika declaring the queue with another x-max-length: %v\n%s", err, out)
	}

	consumer := pika(t, "consume", n.exchange, pyQueue, "true", "false", "false", "true", "10000", "9", "30")
	var stderr bytes.Buffer
	consumer.Stderr = &stderr
	stdout, err := consumer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = consumer.Process.Kill(); _ = consumer.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "READY" {
		t.Fatalf("pika consumer did not start: %q %s", lines.Text(), stderr.String())
	}

	// Go → Python: what the Go bus publishes, the original's consumer reads
	// byte for byte.
	ind := bustest.Indicator(t, 1)
	req, err := stix.NewSnapshotRequest(stix.SnapshotIndicators, stix.NewSnapshotID(), 3712417*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	env, err := stix.NewSnapshotEnvelope(stix.SnapshotIndicators, req.SnapshotID, ind)
	if err != nil {
		t.Fatal(err)
	}
	fromGo := [][]byte{ind, bustest.Sighting(t, 2), req.Raw, env.Raw}
	for _, p := range fromGo {
		bus.Publish(t, p)
	}
	rec.WaitLen(t, len(fromGo))

	// Python → Go: what the original publishes reaches Go subscribers byte
	// for byte, on the topic its "type" says; garbage is rejected.
	out, err := pika(t, "publish", n.exchange).Output()
	if err != nil {
		t.Fatalf("pika publish: %v", err)
	}
	fromPython := decodeLines(t, out)
	if len(fromPython) != 5 {
		t.Fatalf("pika published %d bodies", len(fromPython))
	}
	valid := fromPython[:4]
	rec.WaitLen(t, len(fromGo)+len(valid))
	rec.Quiet(t, len(fromGo)+len(valid), 300*time.Millisecond)
	wantTopics := []string{messages.TopicIndicator, messages.TopicSighting, messages.TopicSnapshotRequest, messages.TopicSnapshotEnvelope}
	got := rec.Messages()
	for i, m := range got {
		want, topic := fromGo, wantTopics
		j := i
		if i >= len(fromGo) {
			want, j = valid, i-len(fromGo)
		}
		if !bytes.Equal(m.Payload, want[j]) || m.Topic != topic[j] {
			t.Fatalf("delivery %d: topic %s, payload\n%s\nwant topic %s, payload\n%s", i, m.Topic, m.Payload, topic[j], want[j])
		}
	}
	if st := b.Stats(); st.Foreign != 4 || st.Rejected["malformed_json"] != 1 {
		t.Fatalf("stats %+v", st)
	}

	// The original's consumer saw the Go bus's messages, then its own.
	var consumed []string
	for lines.Scan() {
		consumed = append(consumed, lines.Text())
	}
	if err := consumer.Wait(); err != nil {
		t.Fatalf("pika consumer: %v\n%s", err, stderr.String())
	}
	bodies := decodeLines(t, []byte(strings.Join(consumed, "\n")))
	want := append(append([][]byte{}, fromGo...), fromPython...)
	if len(bodies) != len(want) {
		t.Fatalf("pika consumer got %d messages, want %d", len(bodies), len(want))
	}
	for i := range want {
		if !bytes.Equal(bodies[i], want[i]) {
			t.Fatalf("pika consumer message %d:\n%s\nwant\n%s", i, bodies[i], want[i])
		}
	}
}
