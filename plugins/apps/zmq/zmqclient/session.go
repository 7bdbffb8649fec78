package zmqclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Session is a long-lived subscription as the existing apps keep one: it
// subscribes, receives on the private topic, sends a heartbeat every
// HeartbeatInterval, and subscribes anew (a new private topic) when a
// heartbeat is answered with an error or not at all, as after a bus
// restart.
type Session struct {
	// Endpoint is the bus's management endpoint, HOST:PORT.
	Endpoint string
	// Topics are what to subscribe to, e.g. stix2/indicator.
	Topics []string
	// Snapshot asks for the objects of the last Snapshot days with the
	// first subscription (not with later ones: the app has them already).
	Snapshot int
	// HeartbeatInterval and Timeout default to the protocol's 5 s.
	HeartbeatInterval time.Duration
	Timeout           time.Duration
	// Log receives progress; nil discards it.
	Log *slog.Logger
	// OnSubscribed, when set, is called with each successful reply.
	OnSubscribed func(Reply)
}

// Run serves until ctx ends, calling handle with each message's topic
// ("<p2p>indicator", …) and payload. At the end it unsubscribes.
func (s *Session) Run(ctx context.Context, handle func(topic string, payload []byte)) error {
	if s.HeartbeatInterval <= 0 {
		s.HeartbeatInterval = HeartbeatInterval
	}
	if s.Timeout <= 0 {
		s.Timeout = Timeout
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, err := Host(s.Endpoint)
	if err != nil {
		return err
	}
	reply, err := s.subscribe(ctx, s.Snapshot, log)
	if err != nil {
		return err
	}
	recv, err := NewReceiver(host, reply.PubPort, reply.Topic, 0)
	if err != nil {
		return err
	}
	defer func() {
		if recv != nil {
			_ = recv.Close()
		}
	}()
	p2p, pubPort := reply.Topic, reply.PubPort

	// Heartbeats run on their own goroutine (their own sockets), so that a
	// slow bus does not stop the receive loop; they report a failure.
	type beat struct {
		p2p string
		ok  bool
	}
	beats := make(chan beat, 1)
	current := make(chan string, 1)
	current <- p2p
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(s.HeartbeatInterval)
		defer t.Stop()
		topic := p2p
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
			}
			select {
			case topic = <-current:
			default:
			}
			status, err := Heartbeat(s.Endpoint, topic, s.Timeout)
			if err != nil || status != StatusSuccess {
				log.Warn("heartbeat failed; subscribing again", "topic", topic, "status", status, "error", err)
				select {
				case beats <- beat{p2p: topic}:
				case <-hbCtx.Done():
					return
				}
			}
		}
	}()
	defer func() { stopHB(); <-hbDone }()

	for ctx.Err() == nil {
		select {
		case b := <-beats:
			if b.p2p != p2p {
				continue // about a topic already replaced
			}
			r, err := s.subscribe(ctx, 0, log)
			if err != nil {
				continue // ctx ended
			}
			if r.PubPort != pubPort {
				_ = recv.Close()
				if recv, err = NewReceiver(host, r.PubPort, r.Topic, 0); err != nil {
					return err
				}
			} else if err := recv.Resubscribe(r.Topic); err != nil {
				return err
			}
			p2p, pubPort = r.Topic, r.PubPort
			select {
			case <-current:
			default:
			}
			current <- p2p
		default:
		}
		topic, payload, err := recv.Receive(100 * time.Millisecond)
		switch {
		case err == nil:
			handle(topic, payload)
		case errors.Is(err, ErrTimeout):
		default:
			return err
		}
	}
	if _, err := Unsubscribe(s.Endpoint, p2p, time.Second); err != nil {
		log.Debug("unsubscribe at exit", "error", err)
	}
	return nil
}

// subscribe retries until the bus answers with success or ctx ends.
func (s *Session) subscribe(ctx context.Context, days int, log *slog.Logger) (Reply, error) {
	for {
		r, err := Subscribe(s.Endpoint, s.Topics, days, s.Timeout)
		if err == nil {
			log.Info("subscribed", "endpoint", s.Endpoint, "topics", s.Topics, "topic", r.Topic, "pub_port", r.PubPort, "sub_port", r.SubPort)
			if s.OnSubscribed != nil {
				s.OnSubscribed(r)
			}
			return r, nil
		}
		if r.Status != "" {
			return r, err // the bus refused: retrying will not help
		}
		log.Warn("subscribe failed; retrying", "endpoint", s.Endpoint, "error", err)
		select {
		case <-ctx.Done():
			return Reply{}, fmt.Errorf("zmqclient: subscribe: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
