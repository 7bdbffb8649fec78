package actors

import (
	"strings"

	"github.com/asynkron/protoactor-go/actor"
)

// table is the router's subscription table: subscriber → topic prefixes,
// with the answer to "who gets topic T" cached per message topic. Messages
// are many and subscriptions change rarely, so a change drops the cache and
// the next message of each topic rebuilds its list once.
type table struct {
	subs  map[string]*tableEntry
	cache map[string][]*actor.PID
}

type tableEntry struct {
	pid    *actor.PID
	topics map[string]struct{}
}

func newTable() *table {
	return &table{subs: map[string]*tableEntry{}, cache: map[string][]*actor.PID{}}
}

func pidKey(pid *actor.PID) string { return pid.Address + "/" + pid.Id }

// add subscribes pid to topics; it reports whether pid is new to the table.
func (t *table) add(pid *actor.PID, topics []string) bool {
	k := pidKey(pid)
	e, ok := t.subs[k]
	if !ok {
		e = &tableEntry{pid: pid, topics: map[string]struct{}{}}
		t.subs[k] = e
	}
	for _, topic := range topics {
		e.topics[topic] = struct{}{}
	}
	clear(t.cache)
	return !ok
}

// remove unsubscribes pid from topics (all of them when topics is empty); it
// reports whether pid is no longer in the table.
func (t *table) remove(pid *actor.PID, topics []string) bool {
	k := pidKey(pid)
	e, ok := t.subs[k]
	if !ok {
		return true
	}
	if len(topics) == 0 {
		clear(e.topics)
	}
	for _, topic := range topics {
		delete(e.topics, topic)
	}
	clear(t.cache)
	if len(e.topics) == 0 {
		delete(t.subs, k)
		return true
	}
	return false
}

// match returns every subscriber with a topic that is a prefix of topic, each
// once. The slice is shared: callers must not modify it.
func (t *table) match(topic string) []*actor.PID {
	if pids, ok := t.cache[topic]; ok {
		return pids
	}
	var pids []*actor.PID
	for _, e := range t.subs {
		for prefix := range e.topics {
			if strings.HasPrefix(topic, prefix) {
				pids = append(pids, e.pid)
				break
			}
		}
	}
	t.cache[topic] = pids
	return pids
}

// pids returns every subscriber.
func (t *table) pids() []*actor.PID {
	out := make([]*actor.PID, 0, len(t.subs))
	for _, e := range t.subs {
		out = append(out, e.pid)
	}
	return out
}

func (t *table) len() int { return len(t.subs) }

func (t *table) has(pid *actor.PID) bool {
	_, ok := t.subs[pidKey(pid)]
	return ok
}
