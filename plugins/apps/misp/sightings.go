package misp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/messages/stix"
)

// sightingBody is the JSON of POST /sightings/add. MISP's sighting type 0
// is "sighting" (1 is false positive, 2 expiration).
type sightingBody struct {
	UUID      string `json:"uuid"`
	Type      string `json:"type"`
	Source    string `json:"source,omitempty"`
	Timestamp int64  `json:"timestamp"`
}

// sinkSighting is the sightings subscription's sink: it turns a STIX
// sighting into MISP's request body and queues it. It never blocks on MISP.
func (a *App) sinkSighting(_ context.Context, env *messages.Envelope) error {
	st := a.st
	s, err := stix.DecodeSighting(env.Payload)
	if err != nil {
		st.counts.sightInvalid.Add(1)
		return fmt.Errorf("misp: sighting: %w", err)
	}
	u, ok := strings.CutPrefix(s.SightingOfRef, stix.TypeIndicator+"--")
	if !ok {
		// A sighting of malware, an observed-data …: MISP sightings are
		// about attributes, which the bus knows as indicators.
		st.counts.sightIgnored.Add(1)
		return nil
	}
	ts := s.LastSeen
	if ts.IsZero() {
		ts = s.Created
	}
	body, err := json.Marshal(sightingBody{UUID: u, Type: "0", Source: s.Source, Timestamp: ts.Unix()})
	if err != nil {
		st.counts.sightInvalid.Add(1)
		return fmt.Errorf("misp: sighting: %w", err)
	}
	if dropped := st.queue.push(u, body); dropped > 0 {
		if st.counts.sightDropped.Add(uint64(dropped)) == uint64(dropped) {
			st.logger().Warn("misp: sighting queue full while MISP is unreachable; dropping the oldest",
				"queue", a.Sightings.Queue, "note", "logged once; Stats().Sightings.Dropped counts them")
		}
	}
	return nil
}

// sendSightings posts queued sightings to MISP, oldest first. A transient
// failure keeps the sighting at the head of the queue and retries it with
// exponential backoff and jitter; a refusal drops it, logged and counted.
func (a *App) sendSightings(ctx context.Context) error {
	st := a.st
	log := st.logger()
	minWait, maxWait := a.Sightings.RetryMin.D(), a.Sightings.RetryMax.D()
	wait := minWait
	failing := false
	for {
		item, ok := st.queue.take()
		if !ok {
			select {
			case <-ctx.Done():
				return nil
			case <-st.queue.notify:
				continue
			}
		}
		err := st.addSighting(ctx, item.body)
		if ctx.Err() != nil {
			st.queue.release(item.seq, false)
			return nil // the sighting stays queued for the next Run
		}
		switch {
		case err == nil:
			st.counts.sightSent.Add(1) // counted first: Queued 0 implies it
			st.queue.release(item.seq, true)
			if failing {
				log.Info("misp: MISP takes sightings again", "queued", st.queue.len())
				failing = false
			}
			wait = minWait
		case transient(err):
			st.queue.release(item.seq, false)
			st.counts.sightRetries.Add(1)
			if !failing {
				log.Warn("misp: cannot send sightings to MISP; keeping them queued and retrying", "error", err, "queued", st.queue.len())
				failing = true
			} else {
				log.Debug("misp: sighting retry failed", "error", err, "next_in", wait)
			}
			d := wait/2 + rand.N(wait/2+1) // jitter: [wait/2, wait]
			if !sleep(ctx, d) {
				return nil
			}
			wait = min(2*wait, maxWait)
		default:
			st.counts.sightRejected.Add(1)
			st.queue.release(item.seq, true)
			st.rejected(item, err)
			wait = minWait
		}
	}
}

// addSighting posts one sighting. A 2xx reply with a "message" and no
// "Sighting" is MISP saying it did not add it.
func (st *state) addSighting(ctx context.Context, body []byte) error {
	reply, err := st.rest.post(ctx, "/sightings/add", body)
	if err != nil {
		return err
	}
	var r struct {
		Sighting json.RawMessage `json:"Sighting"`
		Message  any             `json:"message"`
		Saved    *bool           `json:"saved"`
		Success  *bool           `json:"success"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return &statusError{Message: fmt.Sprintf("unreadable reply to /sightings/add: %.200s", reply)}
	}
	switch {
	case len(r.Sighting) > 0 && string(r.Sighting) != "null":
		return nil
	case r.Saved != nil && !*r.Saved || r.Success != nil && !*r.Success:
		return &statusError{Message: replyMessage(reply)}
	case r.Saved != nil && *r.Saved || r.Success != nil && *r.Success:
		return nil // older MISP answers {"saved": true, "message": "1 sighting successfully added."}
	case r.Message != nil:
		return &statusError{Message: replyMessage(reply)}
	}
	return nil
}

// rejected logs a sighting MISP refused, with MISP's reason. Each distinct
// reason is logged at warning level once (a bus carrying indicators from
// other sources sends many sightings MISP does not know); repeats go to
// debug.
func (st *state) rejected(item sightingItem, err error) {
	var se *statusError
	reason := err.Error()
	if errors.As(err, &se) {
		reason = se.Message
	}
	log := st.logger()
	if st.reasons.first(reason) {
		log.Warn("misp: MISP refused a sighting", "attribute", item.uuid, "error", err,
			"note", "logged once per reason; Stats().Sightings.Rejected counts them")
		return
	}
	log.Debug("misp: MISP refused a sighting", "attribute", item.uuid, "error", err)
}

// reasons remembers which refusal reasons were logged (bounded).
type reasons struct {
	mu   sync.Mutex
	seen map[string]bool
}

const maxReasons = 64

func (r *reasons) first(reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if r.seen[reason] || len(r.seen) >= maxReasons {
		return false
	}
	r.seen[reason] = true
	return true
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sightingItem is one queued sighting.
type sightingItem struct {
	seq  uint64
	uuid string
	body []byte
}

// sightingQueue is the bounded FIFO of sightings waiting for MISP. It lives
// in the app's state, so a restart of Run loses nothing: the sender takes
// the head and removes it only once MISP answered.
type sightingQueue struct {
	mu     sync.Mutex
	items  []sightingItem
	head   int
	cap    int
	seq    uint64
	busy   uint64 // seq of the sighting being posted, 0 if none
	notify chan struct{}
}

func newSightingQueue(n int) *sightingQueue {
	return &sightingQueue{cap: max(n, 1), notify: make(chan struct{}, 1)}
}

// push appends a sighting, dropping the oldest beyond capacity; it returns
// how many were dropped. The sighting being posted is not dropped (the
// next oldest is): MISP may be taking it right now.
func (q *sightingQueue) push(uuid string, body []byte) (dropped int) {
	q.mu.Lock()
	q.seq++
	q.items = append(q.items, sightingItem{seq: q.seq, uuid: uuid, body: body})
	for len(q.items)-q.head > q.cap {
		if q.busy != 0 && q.items[q.head].seq == q.busy {
			q.items[q.head+1] = q.items[q.head]
		}
		q.items[q.head] = sightingItem{}
		q.head++
		dropped++
	}
	if q.head > len(q.items)/2 && q.head > 64 {
		q.items = append(q.items[:0:0], q.items[q.head:]...)
		q.head = 0
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return dropped
}

// take returns the oldest sighting and marks it as being posted.
func (q *sightingQueue) take() (sightingItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return sightingItem{}, false
	}
	q.busy = q.items[q.head].seq
	return q.items[q.head], true
}

// release ends the post of seq; done removes it from the queue.
func (q *sightingQueue) release(seq uint64, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.busy = 0
	if done && q.head < len(q.items) && q.items[q.head].seq == seq {
		q.items[q.head] = sightingItem{}
		q.head++
		if q.head == len(q.items) {
			q.items, q.head = q.items[:0], 0
		}
	}
}

func (q *sightingQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}
