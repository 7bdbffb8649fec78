package zmq

import (
	"context"
	"errors"
	"fmt"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/apps/zmq/internal/zmqfd"
)

// inBatch bounds the frames read between looks at ctx.
const inBatch = 4096

// serveSub is the goroutine that owns the SUB socket: it validates what apps
// publish and hands it to the bus. It closes the socket when ctx ends.
func (a *App) serveSub(ctx context.Context, bus plugins.Bus, sock *zmq4.Socket) error {
	defer func() { _ = sock.Close() }()
	st := a.st
	w, err := zmqfd.New(sock)
	if err != nil {
		return err
	}
	defer w.Close()
	publish := typedPublish(bus)
	for ctx.Err() == nil {
		n := 0
		for ; n < inBatch; n++ {
			var (
				frame []byte
				peer  string
				err   error
			)
			if a.SuppressEcho {
				var md map[string]string
				frame, md, err = sock.RecvBytesWithMetadata(zmq4.DONTWAIT, peerAddress)
				peer = md[peerAddress]
			} else {
				frame, err = sock.RecvBytes(zmq4.DONTWAIT)
			}
			if err != nil {
				if isEAGAIN(err) {
					break
				}
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("zmq: receive on the sub socket: %w", err)
			}
			if more, _ := sock.GetRcvmore(); more {
				for more {
					if _, err := sock.RecvBytes(0); err != nil {
						break
					}
					more, _ = sock.GetRcvmore()
				}
				st.rejected.add(st.logger(), reject(causeMultipart, errors.New("a multipart message: apps send one frame per object")))
				continue
			}
			st.receive(ctx, publish, frame, peer, a.SuppressEcho)
		}
		if n == inBatch {
			continue
		}
		if _, err := w.Readable(sock, pollPeriod); err != nil {
			return fmt.Errorf("zmq: wait for the sub socket: %w", err)
		}
	}
	return nil
}

// typedPublish returns how validated objects go on the bus: without a
// second look for their type where the bus offers that.
func typedPublish(bus plugins.Bus) func(ctx context.Context, typ string, payload []byte) error {
	if tp, ok := bus.(plugins.TypedPublisher); ok {
		return tp.PublishTyped
	}
	return func(ctx context.Context, _ string, payload []byte) error { return bus.Publish(ctx, payload) }
}

// receive validates and publishes one frame.
func (s *state) receive(ctx context.Context, publish func(context.Context, string, []byte) error, frame []byte, peer string, suppressEcho bool) {
	msg, rej := decodeFrame(frame)
	if rej != nil {
		s.rejected.add(s.logger(), rej)
		return
	}
	if msg.snapshotID != "" && !s.snapshots.has(msg.snapshotID) {
		s.rejected.add(s.logger(), reject(causeUnknownSnapshot, fmt.Errorf("snapshot id %.64q was not requested from this app, or has expired", msg.snapshotID)))
		return
	}
	if suppressEcho && peer != "" && msg.snapshotID == "" {
		s.echoes.add(msg.payload, peer)
	}
	if err := publish(ctx, msg.typ, msg.payload); err != nil {
		s.rejected.add(s.logger(), reject(causePublish, err))
		return
	}
	s.accepted.Add(1)
}
