package zeek

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/threatbus/threatbus/plugins"
	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

// handshakeTopics are the topics the bus subscribes to at Zeek: the
// management events and the sightings.
var handshakeTopics = []string{ManagementTopic, SightingTopic}

// endpoint is one configured Zeek: it dials, keeps one session at a time
// and dials again when the session ends.
type endpoint struct {
	app *App
	st  *state
	url string

	connected atomic.Bool
	c         counters

	mu                        sync.Mutex
	lastErr                   string
	zeekEndpoint, zeekVersion string
	sess                      *session
}

func newEndpoint(a *App, st *state, url string) *endpoint {
	e := &endpoint{app: a, st: st, url: url, lastErr: "not connected yet"}
	e.c.serverErrors, e.c.rejected, e.c.ignored = newTally(), newTally(), newTally()
	return e
}

func (e *endpoint) lastError() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastErr
}

func (e *endpoint) setDown(err error) {
	e.connected.Store(false)
	e.mu.Lock()
	e.sess = nil
	if err != nil {
		e.lastErr = err.Error()
	}
	e.mu.Unlock()
}

// run keeps a session to the endpoint until ctx ends.
func (e *endpoint) run(ctx context.Context, bus plugins.Bus, log *slog.Logger, client *http.Client) {
	log = log.With("endpoint", e.url)
	bo := backoff{min: e.app.ReconnectMin.D(), max: e.app.ReconnectMax.D()}
	lastLogged := ""
	for ctx.Err() == nil {
		conn, ack, stop, err := e.connect(ctx, client)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			e.setDown(err)
			wait := bo.next()
			// The first failure of a kind is worth a warning; repeating it
			// every few seconds is not.
			if msg := err.Error(); msg != lastLogged {
				log.Warn("zeek: cannot connect; retrying", "error", err, "retry_in", wait)
				lastLogged = msg
			} else {
				log.Debug("zeek: cannot connect; retrying", "error", err, "retry_in", wait)
			}
			sleep(ctx, wait)
			continue
		}
		bo.reset()
		lastLogged = ""
		e.c.connects.Add(1)
		s := newSession(e, conn, bus, log)
		e.mu.Lock()
		e.zeekEndpoint, e.zeekVersion, e.sess, e.lastErr = ack.Endpoint, ack.Version, s, ""
		e.mu.Unlock()
		e.connected.Store(true)
		log.Info("zeek: connected", "zeek_endpoint", ack.Endpoint, "zeek_version", ack.Version)

		err = s.run(ctx)
		stop()
		if ctx.Err() != nil {
			e.setDown(errors.New("stopped"))
			break
		}
		e.c.disconnects.Add(1)
		e.setDown(err)
		wait := bo.next()
		log.Warn("zeek: connection lost; reconnecting", "error", err, "retry_in", wait)
		sleep(ctx, wait)
	}
	e.setDown(errors.New("stopped"))
}

// connect dials the endpoint and does the handshake: the topic list out,
// the ack back. stop must be called when the connection is done: the
// dialing context lives as long as the connection, because cancelling it
// could close the connection (net/http hands the upgraded connection over
// under that context).
func (e *endpoint) connect(ctx context.Context, client *http.Client) (_ *websocket.Conn, _ *bj.Ack, stop func(), err error) {
	dctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(e.app.ConnectTimeout.D(), cancel)
	defer func() {
		if err != nil {
			if !timer.Stop() && ctx.Err() == nil {
				err = fmt.Errorf("%w (connect_timeout %s)", err, e.app.ConnectTimeout.D())
			}
			cancel()
		}
	}()
	header := http.Header{}
	if e.app.ApplicationName != "" {
		header.Set("X-Application-Name", e.app.ApplicationName)
	}
	conn, resp, err := websocket.Dial(dctx, e.url, &websocket.DialOptions{HTTPClient: client, HTTPHeader: header})
	if err != nil {
		if resp != nil {
			return nil, nil, nil, fmt.Errorf("dial: HTTP %s: %w", resp.Status, err)
		}
		return nil, nil, nil, fmt.Errorf("dial: %w", err)
	}
	conn.SetReadLimit(int64(e.app.MaxMessageSize))
	if err := conn.Write(dctx, websocket.MessageText, bj.EncodeTopics(handshakeTopics)); err != nil {
		_ = conn.CloseNow()
		return nil, nil, nil, fmt.Errorf("handshake: send topics: %w", err)
	}
	_, b, err := conn.Read(dctx)
	if err != nil {
		_ = conn.CloseNow()
		return nil, nil, nil, fmt.Errorf("handshake: waiting for the ack: %w", err)
	}
	m, err := bj.Decode(b)
	if err != nil {
		_ = conn.CloseNow()
		return nil, nil, nil, fmt.Errorf("handshake: not an ack: %w", err)
	}
	switch m := m.(type) {
	case *bj.Ack:
		if !timer.Stop() {
			// The timeout fired as the ack arrived: the connection may be
			// closing; count it as timed out.
			_ = conn.CloseNow()
			return nil, nil, nil, errors.New("handshake: timed out")
		}
		return conn, m, cancel, nil
	case *bj.ErrorMessage:
		_ = conn.CloseNow()
		return nil, nil, nil, fmt.Errorf("handshake refused: %s: %s", m.Code, m.Context)
	}
	_ = conn.CloseNow()
	return nil, nil, nil, fmt.Errorf("handshake: got a %T instead of an ack", m)
}

// backoff is exponential with equal jitter: the wait is between half and
// all of min·2ⁿ, capped at max.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	d := b.max
	if b.n < 32 {
		if s := b.min << b.n; s > 0 && s < b.max {
			d = s
		}
	}
	b.n++
	half := d / 2
	return half + rand.N(d-half+1)
}

func (b *backoff) reset() { b.n = 0 }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
