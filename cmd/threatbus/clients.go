package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins/apps/zmq"
	"github.com/threatbus/threatbus/plugins/apps/zmq/zmqclient"
)

// The zmq app's clients: how a user tries the bus in a minute, and what the
// existing Python apps do, in the same binary.

// topicList is a repeatable string flag.
type topicList []string

func (t *topicList) String() string     { return strings.Join(*t, ",") }
func (t *topicList) Set(s string) error { *t = append(*t, s); return nil }

// untilSignal returns a context cancelled by SIGINT/SIGTERM (or by a value
// on signals, for tests).
func untilSignal(signals <-chan os.Signal) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	stop := func() {}
	if signals == nil {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		stop = func() { signal.Stop(ch) }
		signals = ch
	}
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(); stop() }
}

func clientLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// subscribeCmd subscribes like an app, prints every indicator and sighting
// it receives as one JSON line on stdout, heartbeats every 5 s and
// subscribes again when the bus has forgotten it (after a restart).
func subscribeCmd(args []string, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	fs := flag.NewFlagSet("subscribe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := fs.String("endpoint", "127.0.0.1:13370", "the zmq app's management endpoint, HOST:PORT")
	var topics topicList
	fs.Var(&topics, "topic", "topic to subscribe to; repeat for several (default stix2/indicator)")
	days := fs.Int("snapshot", 0, "also ask for the objects of the last DAYS days")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 || *days < 0 {
		fmt.Fprintf(stderr, "threatbus: subscribe: unexpected arguments %q\n\n%s", fs.Args(), usage)
		return exitUsage
	}
	if _, err := zmqclient.Host(*endpoint); err != nil {
		fmt.Fprintf(stderr, "threatbus: subscribe: %v\n", err)
		return exitUsage
	}
	if len(topics) == 0 {
		topics = topicList{"stix2/indicator"}
	}
	ctx, stop := untilSignal(signals)
	defer stop()
	log := clientLogger(stderr)
	out := bufio.NewWriter(stdout)
	var line bytes.Buffer
	sess := &zmqclient.Session{Endpoint: *endpoint, Topics: topics, Snapshot: *days, Log: log}
	err := sess.Run(ctx, func(topic string, payload []byte) {
		switch {
		case strings.HasSuffix(topic, "indicator"), strings.HasSuffix(topic, "sighting"):
			line.Reset()
			if err := json.Compact(&line, payload); err != nil {
				log.Warn("received something that is not JSON", "topic", topic, "error", err)
				return
			}
			line.WriteByte('\n')
			_, _ = out.Write(line.Bytes())
			_ = out.Flush()
		case strings.HasSuffix(topic, "snapshotrequest"):
			log.Info("ignoring a snapshot request from the bus: this client keeps no objects")
		default:
			log.Warn("ignoring a message of unknown kind", "topic", topic)
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "threatbus: subscribe: %v\n", err)
		return exitFail
	}
	return exitOK
}

// publisherTopic is what `threatbus publish` subscribes to, only to learn
// the ports: no message has it, so nothing is ever held for it.
const publisherTopic = "threatbus/publish-only"

// publishCmd sends the objects of a file (or stdin) to the bus's zmq app, as
// an app publishes them. It waits until the bus is connected before the
// first one, so that none is lost, and for the last to be sent before it
// exits.
func publishCmd(args []string, stdin io.Reader, stderr io.Writer, signals <-chan os.Signal) int {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := fs.String("endpoint", "127.0.0.1:13370", "the zmq app's management endpoint, HOST:PORT")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stderr, "threatbus: publish: one FILE at most\n\n%s", usage)
		return exitUsage
	}
	host, err := zmqclient.Host(*endpoint)
	if err != nil {
		fmt.Fprintf(stderr, "threatbus: publish: %v\n", err)
		return exitUsage
	}
	in, name := stdin, "stdin"
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "threatbus: publish: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		in, name = f, fs.Arg(0)
	}
	ctx, stop := untilSignal(signals)
	defer stop()

	reply, err := zmqclient.Subscribe(*endpoint, []string{publisherTopic}, 0, zmqclient.Timeout)
	if err != nil {
		fmt.Fprintf(stderr, "threatbus: publish: ask %s for its ports: %v\n", *endpoint, err)
		return exitFail
	}
	defer func() { _, _ = zmqclient.Unsubscribe(*endpoint, reply.Topic, zmqclient.Timeout) }()
	pub, err := zmqclient.NewPublisher(host, reply.SubPort, 0)
	if err != nil {
		fmt.Fprintf(stderr, "threatbus: publish: %v\n", err)
		return exitFail
	}
	readyCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = pub.WaitReady(readyCtx)
	cancel()
	if err != nil {
		_ = pub.Close(0)
		fmt.Fprintf(stderr, "threatbus: publish: %s:%d: %v\n", host, reply.SubPort, err)
		return exitFail
	}

	sent, skipped, ignored := 0, 0, 0
	readErr := eachObject(in, func(n int, obj []byte, inBundle bool) {
		if inBundle {
			if typ, _, err := stix.Peek(obj); err == nil && typ != stix.TypeIndicator && typ != stix.TypeSighting {
				ignored++ // a bundle's identities, relationships …: not for the bus
				return
			}
		}
		topic, err := topicOf(obj)
		if err == nil {
			err = zmq.CheckFrame(append([]byte(topic+" "), obj...))
		}
		if err != nil {
			skipped++
			fmt.Fprintf(stderr, "threatbus: publish: %s: object %d skipped: %v\n", name, n, err)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if err := pub.Publish(topic, obj); err != nil {
			skipped++
			fmt.Fprintf(stderr, "threatbus: publish: object %d: %v\n", n, err)
			return
		}
		sent++
	})
	if err := pub.Close(10 * time.Second); err != nil {
		fmt.Fprintf(stderr, "threatbus: publish: %v\n", err)
	}
	fmt.Fprintf(stderr, "threatbus: published %d objects to %s:%d (%d invalid skipped, %d other bundle objects ignored)\n", sent, host, reply.SubPort, skipped, ignored)
	switch {
	case readErr != nil:
		fmt.Fprintf(stderr, "threatbus: publish: %s: %v\n", name, readErr)
		return exitFail
	case skipped > 0 || ctx.Err() != nil:
		return exitFail
	}
	return exitOK
}

// eachObject calls f with every JSON value of r (JSON lines, or objects
// spread over lines), numbered from 1, as its exact bytes; the objects of a
// STIX bundle are passed one by one, with inBundle set.
func eachObject(r io.Reader, f func(n int, obj []byte, inBundle bool)) error {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<20))
	n := 0
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("after object %d: %w", n, err)
		}
		if typ, _, err := stix.Peek(raw); err == nil && typ == "bundle" {
			var b struct {
				Objects []json.RawMessage `json:"objects"`
			}
			if err := json.Unmarshal(raw, &b); err != nil {
				return fmt.Errorf("bundle after object %d: %w", n, err)
			}
			for _, o := range b.Objects {
				n++
				f(n, o, true)
			}
			continue
		}
		n++
		f(n, raw, false)
	}
}

// topicOf is the topic an app publishes an object on.
func topicOf(obj []byte) (string, error) {
	typ, _, err := stix.Peek(obj)
	if err != nil {
		return "", err
	}
	switch typ {
	case stix.TypeIndicator, stix.TypeSighting:
		return "stix2/" + typ, nil
	case stix.TypeSnapshotEnvelope:
		return "threatbus/snapshotenvelope", nil
	}
	return "", fmt.Errorf("a %q: the bus takes indicators and sightings", typ)
}
