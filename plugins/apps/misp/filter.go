package misp

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/threatbus/threatbus/messages/stix"
)

// compiledFilter is a Filter as sets. Tags compare case-insensitively, as
// MISP's own tag search does; org ids numerically.
type compiledFilter struct {
	orgs, types, tags map[string]bool
}

func compileFilters(fs []Filter) []compiledFilter {
	out := make([]compiledFilter, 0, len(fs))
	for _, f := range fs {
		c := compiledFilter{orgs: set(f.Orgs, normalizeOrg), types: set(f.Types, nil), tags: set(f.Tags, strings.ToLower)}
		out = append(out, c)
	}
	return out
}

func set(vals []string, norm func(string) string) map[string]bool {
	if len(vals) == 0 {
		return nil
	}
	m := make(map[string]bool, len(vals))
	for _, v := range vals {
		if norm != nil {
			v = norm(v)
		}
		m[v] = true
	}
	return m
}

// normalizeOrg writes an org id without leading zeros or blanks, so that
// "01", 1 and "1" compare equal.
func normalizeOrg(s string) string {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return strconv.FormatUint(n, 10)
	}
	return s
}

// facts is what a filter is matched against. An unknown fact (a hard
// delete carries no Event, and perhaps no tags) matches every filter.
type facts struct {
	org       string
	orgKnown  bool
	typ       string
	tags      []string
	tagsKnown bool
}

func (f compiledFilter) match(x facts) bool {
	if f.orgs != nil && x.orgKnown && !f.orgs[normalizeOrg(x.org)] {
		return false
	}
	if f.types != nil && !f.types[x.typ] {
		return false
	}
	if f.tags != nil && x.tagsKnown {
		for _, t := range x.tags {
			if f.tags[strings.ToLower(t)] {
				return true
			}
		}
		return false
	}
	return true
}

func factsOf(a *attribute, ev *event) facts {
	x := facts{typ: string(a.Type), tags: a.Tag.names, tagsKnown: a.Tag.present || ev != nil}
	if ev != nil {
		x.org, x.orgKnown = ev.creator(), true
		x.tags = append(append([]string(nil), a.Tag.names...), ev.Tag.names...)
	}
	return x
}

// processor turns attribute messages into indicators: the action and
// to_ids rules, the filters, the mapping. It remembers, per attribute, what
// it last published, so that a hard delete (which has no Event to filter
// on) follows the decision made for the attribute before, and an edit that
// takes an attribute out of every filter withdraws it.
type processor struct {
	filters []compiledFilter

	mu    sync.Mutex
	known *recall
}

// maxKnown bounds the attributes the processor remembers (about 100 bytes
// each); the oldest are forgotten first, and a forgotten attribute's hard
// delete is matched on the facts it carries.
const maxKnown = 1 << 17

func newProcessor(fs []Filter) *processor {
	p := &processor{filters: compileFilters(fs)}
	if len(p.filters) > 0 {
		p.known = newRecall(maxKnown)
	}
	return p
}

// process maps one message; the error is a *skip when no indicator results.
func (p *processor) process(b []byte, now time.Time) (*stix.Indicator, error) {
	m, err := decodeMessage(b)
	if err != nil {
		return nil, &skip{cause: causeMalformed, err: err}
	}
	a := m.Attribute
	update := stix.UpdateNone
	switch action := strings.ToLower(strings.TrimSpace(string(m.Action))); action {
	case "delete", "soft-delete":
		update = stix.UpdateRemove
	case "add", "":
		switch {
		case a.Deleted.v:
			update = stix.UpdateRemove
		case !a.ToIDs.v:
			return nil, skipf(causeToIDs, "attribute %.40s added with to_ids = false", string(a.UUID))
		}
	case "edit":
		update = stix.UpdateEdit
		if a.Deleted.v || !a.ToIDs.v {
			update = stix.UpdateRemove
		}
	default:
		return nil, skipf(causeUnknownAction, "action %.40q", action)
	}
	ev := m.Event
	if ev == nil {
		ev = a.Event
	}
	key := strings.ToLower(strings.TrimSpace(string(a.UUID)))
	update, ok := p.admit(key, factsOf(a, ev), ev != nil, update)
	if !ok {
		return nil, skipf(causeFiltered, "attribute %.40s (%.40s) matches no filter", key, string(a.Type))
	}
	ind, err := indicatorFor(a, update, now)
	if err != nil {
		return nil, err
	}
	p.note(key, update != stix.UpdateRemove)
	return ind, nil
}

// admit applies the filters. It may turn an update into a REMOVE: an
// attribute that was published and no longer matches is withdrawn.
func (p *processor) admit(key string, x facts, haveEvent bool, update stix.Update) (stix.Update, bool) {
	if len(p.filters) == 0 {
		return update, true
	}
	match := false
	for _, f := range p.filters {
		if f.match(x) {
			match = true
			break
		}
	}
	p.mu.Lock()
	active, known := p.known.get(key)
	p.mu.Unlock()
	pass := false
	switch {
	case update == stix.UpdateRemove && !haveEvent && known:
		pass = active // the decision made when it was added
	case update == stix.UpdateRemove:
		pass = match || active
	case match:
		pass = true
	case active:
		update, pass = stix.UpdateRemove, true // it left every filter: withdraw it
	}
	if !pass {
		p.note(key, false) // remembered for a later hard delete
	}
	return update, pass
}

// note records what was published for an attribute.
func (p *processor) note(key string, active bool) {
	if p.known == nil {
		return
	}
	p.mu.Lock()
	p.known.put(key, active)
	p.mu.Unlock()
}

// recall is a bounded map that forgets its oldest keys first.
type recall struct {
	m    map[string]bool
	ring []string
	cap  int
	next int
}

func newRecall(n int) *recall {
	return &recall{m: map[string]bool{}, ring: make([]string, 0, min(n, 1024)), cap: n}
}

func (r *recall) get(k string) (v, ok bool) {
	v, ok = r.m[k]
	return
}

func (r *recall) put(k string, v bool) {
	if _, ok := r.m[k]; ok {
		r.m[k] = v
		return
	}
	if len(r.ring) < r.cap {
		r.ring = append(r.ring, k)
	} else {
		delete(r.m, r.ring[r.next])
		r.ring[r.next] = k
		r.next = (r.next + 1) % r.cap
	}
	r.m[k] = v
}
