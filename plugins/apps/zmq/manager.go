package zmq

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/apps/zmq/internal/zmqfd"
)

// subscribeTimeout bounds how long a subscribe may wait for the bus. Clients
// give up after 5 s; the reply must still be sent (REQ/REP lock-step).
const subscribeTimeout = 4 * time.Second

// serveManage is the goroutine that owns the REP socket: one reply per
// request, whatever happens. Between requests it expires subscriptions whose
// heartbeats stopped and reports drops. It closes the socket when ctx ends.
func (a *App) serveManage(ctx context.Context, bus plugins.Bus, sock *zmq4.Socket) error {
	defer func() { _ = sock.Close() }()
	st := a.st
	log := bus.Logger()
	w, err := zmqfd.New(sock)
	if err != nil {
		return err
	}
	defer w.Close()
	now := time.Now()
	nextExpiry, nextStats := now, now.Add(a.StatsInterval.D())
	for ctx.Err() == nil {
		ready, err := w.Readable(sock, pollPeriod)
		if err != nil {
			return fmt.Errorf("zmq: wait for the manage socket: %w", err)
		}
		if ready {
			parts, md, err := sock.RecvMessageBytesWithMetadata(zmq4.DONTWAIT, peerAddress)
			switch {
			case err == nil:
				reply := a.handle(ctx, bus, parts, md[peerAddress])
				if _, err := sock.SendBytes(reply, zmq4.DONTWAIT); err != nil {
					log.Debug("management reply not sent", "error", err)
				}
			case isEAGAIN(err):
			case ctx.Err() != nil:
				return nil
			default:
				return fmt.Errorf("zmq: receive on the manage socket: %w", err)
			}
		}
		now = time.Now()
		if timeout := a.HeartbeatTimeout.D(); timeout > 0 && !now.Before(nextExpiry) {
			nextExpiry = now.Add(min(timeout/4, time.Second))
			a.expire(ctx, now, timeout)
		}
		if every := a.StatsInterval.D(); every > 0 && !now.Before(nextStats) {
			nextStats = now.Add(every)
			st.logStats(log, "messages for an app were dropped", false)
		}
	}
	return nil
}

// handle answers one request. A panic answers "error" too: REQ/REP is
// lock-step, and a client without its reply is stuck.
func (a *App) handle(ctx context.Context, bus plugins.Bus, parts [][]byte, peer string) (reply []byte) {
	log := bus.Logger()
	defer func() {
		if r := recover(); r != nil {
			log.Error("management request handler panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			reply = statusReply(statusError)
		}
	}()
	if len(parts) != 1 {
		log.Debug("management request of several frames", "frames", len(parts))
		return statusReply(statusError)
	}
	req, status := decodeRequest(parts[0])
	if status != "" {
		log.Debug("management request refused", "status", status, "request", truncate(parts[0], 256), "peer", peer)
		return statusReply(status)
	}
	st := a.st
	switch req.action {
	case actionSubscribe:
		return a.subscribe(ctx, bus, req, peer)
	case actionUnsubscribe:
		c := st.remove(req.topics[0])
		if c == nil {
			log.Debug("unsubscribe for an unknown topic", "topic", truncate([]byte(req.topics[0]), 64), "peer", peer)
			return statusReply(statusError)
		}
		if err := st.end(ctx, c, "app unsubscribed"); err != nil {
			log.Warn("ending a subscription", "topic", c.p2p, "error", err)
		}
		return statusReply(statusSuccess)
	case actionHeartbeat:
		c := st.lookup(req.topics[0])
		if c == nil {
			log.Debug("heartbeat for an unknown topic: the app will re-subscribe", "topic", truncate([]byte(req.topics[0]), 64), "peer", peer)
			return statusReply(statusError)
		}
		c.lastBeat.Store(time.Now().UnixNano())
		return statusReply(statusSuccess)
	}
	return statusReply(statusUnknown) // not reached: decodeRequest knows the actions
}

func (a *App) subscribe(ctx context.Context, bus plugins.Bus, req request, peer string) []byte {
	log := bus.Logger()
	st := a.st
	p2p, err := newP2P()
	if err != nil {
		log.Error("subscribe", "error", err)
		return statusReply(statusError)
	}
	c := newClient(p2p, req.topics, peer, time.Now())
	sctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	sub, err := bus.Subscribe(sctx, plugins.SubscribeRequest{
		Topics:   req.topics,
		Snapshot: req.snapshot,
		Sink:     st.sink(c, a.SuppressEcho),
		Name:     p2p,
	})
	if err != nil {
		log.Warn("subscribe failed", "topics", req.topics, "error", err)
		return statusReply(statusError)
	}
	if !st.add(c, sub) {
		// Its sink saw its context end: busEnded logs what it had.
		log.Warn("subscribe failed: the bus ended the subscription at once", "topic", p2p, "topics", req.topics)
		return statusReply(statusError)
	}
	log.Info("app subscribed", "topic", p2p, "topics", req.topics, "snapshot", req.snapshot, "snapshot_id", sub.SnapshotID(), "peer", peer)
	_, pub, subPort := a.Ports()
	return subscribeReply(p2p, pub, subPort)
}

// expire ends the subscriptions whose app has not sent a heartbeat within
// timeout.
func (a *App) expire(ctx context.Context, now time.Time, timeout time.Duration) {
	st := a.st
	log := st.logger()
	for _, c := range st.list() {
		last := time.Unix(0, c.lastBeat.Load())
		if now.Sub(last) <= timeout || st.remove(c.p2p) != c {
			continue
		}
		msg := fmt.Sprintf("subscription expired: no heartbeat for %s", now.Sub(last).Round(time.Millisecond))
		if err := st.end(ctx, c, msg); err != nil {
			log.Warn("ending a subscription", "topic", c.p2p, "error", err)
		}
		st.expired.Add(1) // after the line with the totals, which tests wait for
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
