package actors

import (
	"log/slog"
	"sort"
	"sync"
)

// tally counts events by cause and logs the first of each cause, so a flood
// of the same bad input costs one log line and stays visible as a count.
type tally struct {
	log    *slog.Logger
	msg    string
	mu     sync.Mutex
	counts map[string]uint64
}

func newTally(log *slog.Logger, msg string) *tally {
	return &tally{log: log, msg: msg, counts: map[string]uint64{}}
}

// add counts one event of cause; attrs go to the log line of the first one.
func (t *tally) add(cause string, attrs ...any) { t.addN(cause, 1, attrs...) }

// addN counts n events of cause at once.
func (t *tally) addN(cause string, n uint64, attrs ...any) {
	if n == 0 {
		return
	}
	t.mu.Lock()
	first := t.counts[cause] == 0
	t.counts[cause] += n
	t.mu.Unlock()
	if first && t.log != nil {
		t.log.Warn(t.msg, append([]any{"cause", cause, "note", "logged once per cause; further ones are only counted"}, attrs...)...)
	}
}

// snapshot returns a copy of the counts.
func (t *tally) snapshot() map[string]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]uint64, len(t.counts))
	for k, v := range t.counts {
		out[k] = v
	}
	return out
}

func (t *tally) causes() []string {
	m := t.snapshot()
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
