package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/threatbus/threatbus/internal/config"
	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/apps/zmq"
	"github.com/threatbus/threatbus/plugins/backbones/inmem"
	"github.com/threatbus/threatbus/tests/bustest"
)

// zmqBus starts a bus with the zmq app on free ports and returns its
// management endpoint.
func zmqBus(t *testing.T) (*bustest.Bus, *zmq.App, string) {
	t.Helper()
	app := zmq.New()
	app.Manage, app.Pub, app.Sub = 0, 0, 0
	if err := app.Init(); err != nil {
		t.Fatal(err)
	}
	b := bustest.Start(t, &inmem.Backbone{}, bustest.Options{
		Apps: []config.Instance{{Kind: plugins.KindApp, Name: "zmq", Plugin: app}},
	})
	bustest.Eventually(t, "the zmq app to listen", func() bool { return app.Ready() == nil })
	manage, _, _ := app.Ports()
	return b, app, fmt.Sprintf("127.0.0.1:%d", manage)
}

// TestSubscribeAndPublishCommands: `threatbus publish` sends a file's
// objects, `threatbus subscribe` prints them as JSON lines, exactly.
func TestSubscribeAndPublishCommands(t *testing.T) {
	b, app, endpoint := zmqBus(t)
	data := "../../../shared/testdata/stix/"
	read := func(name string) []byte {
		t.Helper()
		raw, err := os.ReadFile(data + name)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.TrimSpace(raw)
	}
	ind, sight := read("indicator-opencti-style.json"), read("sighting-zeek.json")

	var out, errs bustest.SyncBuffer
	signals := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"subscribe", "--endpoint", endpoint, "--topic", "stix2/indicator", "--topic", "stix2/sighting"}, &out, &errs, signals)
	}()
	bustest.Eventually(t, "the subscriber to subscribe", func() bool { return len(app.Stats().Subscriptions) == 1 })

	// Objects as JSON lines, one invalid: it is skipped and reported.
	file := filepath.Join(t.TempDir(), "objects.jsonl")
	content := string(ind) + "\n" + `{"type": "indicator", "spec_version": "2.1"}` + "\n\n" + string(sight) + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, perr := runCLI(t, nil, "publish", "--endpoint", endpoint, file)
	if code != exitFail || !strings.Contains(perr, "published 2 objects") || !strings.Contains(perr, "object 2 skipped: invalid_indicator") {
		t.Fatalf("publish: exit %d\n%s", code, perr)
	}
	// A bundle: its indicator goes, its other objects are ignored.
	code, _, perr = runCLI(t, nil, "publish", "--endpoint", endpoint, data+"bundle-indicator-c2-ip.json")
	if code != exitOK || !strings.Contains(perr, "published 1 objects") {
		t.Fatalf("publish bundle: exit %d\n%s", code, perr)
	}
	// The bus also delivers what others publish.
	b.Publish(t, bustest.Indicator(t, 7))

	bustest.Eventually(t, "four lines of output", func() bool { return strings.Count(out.String(), "\n") >= 4 })
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if lines[0] != string(ind) && lines[0] != compact(t, ind) {
		t.Errorf("line 1: %s\nwant %s", lines[0], ind)
	}
	if lines[1] != compact(t, sight) {
		t.Errorf("line 2: %s\nwant %s", lines[1], compact(t, sight))
	}
	if !strings.Contains(lines[2], `"id":"indicator--33fe3b22-0201-47cf-85d0-97c02164528d"`) {
		t.Errorf("line 3: %s", lines[2])
	}
	if !strings.Contains(lines[3], `"x_seq":7`) {
		t.Errorf("line 4: %s", lines[3])
	}
	signals <- syscall.SIGINT
	if code := <-done; code != exitOK {
		t.Fatalf("subscribe: exit %d\n%s", code, errs.String())
	}
	if n := len(app.Stats().Subscriptions); n != 0 {
		t.Errorf("%d subscriptions left after the subscriber quit", n)
	}
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestClientCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"subscribe", "--endpoint", "nohostport"},
		{"subscribe", "extra"},
		{"subscribe", "--snapshot", "-1"},
		{"publish", "a", "b"},
		{"publish", "--endpoint", "x"},
		{"publish", "--endpoint", "127.0.0.1:1", "/nonexistent/file"},
	} {
		if code, _, _ := runCLI(t, nil, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}
