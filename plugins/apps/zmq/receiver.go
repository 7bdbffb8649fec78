package zmq

import (
	"context"
	"errors"
	"fmt"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/apps/zmq/internal/zmqbatch"
	"github.com/threatbus/threatbus/plugins/apps/zmq/internal/zmqfd"
)

// Sub loop tuning: inBatch bounds the frames read between looks at ctx,
// recvBatch the frames taken from zmq with one cgo call, pubBatch the
// objects put on the bus with one hand-off. A batch goes out when it is
// full or when the socket has nothing more for now, so a quiet app's frame
// waits for nothing.
const (
	inBatch   = 4096
	recvBatch = 128
	pubBatch  = 128
)

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
	rcv, err := zmqbatch.New(sock, recvBatch, a.SuppressEcho)
	if err != nil {
		return err
	}
	defer rcv.Close()
	out := newBatcher(ctx, st, bus)
	defer out.flush()
	frames := make([]zmqbatch.Msg, 0, recvBatch)
	inMultipart := false // the parts after the first of a multipart message are skipped
	for ctx.Err() == nil {
		n := 0
		for n < inBatch {
			frames, err = rcv.Recv(frames[:0])
			n += len(frames)
			for i := range frames {
				f := &frames[i]
				switch {
				case inMultipart:
					inMultipart = f.More
				case f.More:
					inMultipart = true
					st.rejected.add(st.logger(), reject(causeMultipart, errors.New("a multipart message: apps send one frame per object")))
				default:
					st.receive(out, f.Data, f.Peer, a.SuppressEcho)
				}
				*f = zmqbatch.Msg{}
			}
			if err != nil { // after handling what came before it
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("zmq: receive on the sub socket: %w", err)
			}
			if len(frames) < recvBatch { // the socket has nothing more for now
				break
			}
		}
		out.flush()
		if n >= inBatch {
			continue
		}
		if _, err := w.Readable(sock, pollPeriod); err != nil {
			return fmt.Errorf("zmq: wait for the sub socket: %w", err)
		}
	}
	return nil
}

// batcher gathers validated objects and puts them on the bus a batch at
// a time, through plugins.BatchPublisher where the bus offers it.
type batcher struct {
	ctx   context.Context
	st    *state
	bus   plugins.Bus
	batch plugins.BatchPublisher // nil: one Publish per object
	objs  []plugins.Object
}

func newBatcher(ctx context.Context, st *state, bus plugins.Bus) *batcher {
	p := &batcher{ctx: ctx, st: st, bus: bus, objs: make([]plugins.Object, 0, pubBatch)}
	p.batch, _ = bus.(plugins.BatchPublisher)
	return p
}

func (p *batcher) add(typ string, payload []byte) {
	p.objs = append(p.objs, plugins.Object{Type: typ, Payload: payload})
	if len(p.objs) == pubBatch {
		p.flush()
	}
}

func (p *batcher) flush() {
	if len(p.objs) == 0 {
		return
	}
	if p.batch != nil {
		if err := p.batch.PublishBatch(p.ctx, p.objs); err != nil {
			for range p.objs {
				p.st.rejected.add(p.st.logger(), reject(causePublish, err))
			}
		} else {
			p.st.accepted.Add(uint64(len(p.objs)))
		}
	} else {
		for _, o := range p.objs {
			if err := p.bus.Publish(p.ctx, o.Payload); err != nil {
				p.st.rejected.add(p.st.logger(), reject(causePublish, err))
				continue
			}
			p.st.accepted.Add(1)
		}
	}
	clear(p.objs)
	p.objs = p.objs[:0]
}

// receive validates one frame and adds it to what goes on the bus.
func (s *state) receive(out *batcher, frame []byte, peer string, suppressEcho bool) {
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
	out.add(msg.typ, msg.payload)
}
