package misp

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// attrMsg builds an attribute message of type typ with tags, created by org
// (a JSON value: "1" or 1); org "" leaves the Event out (a hard delete).
func attrMsg(action, uuid, typ, value, org string, attrTags, eventTags []string) []byte {
	tags := func(names []string) string {
		if names == nil {
			return ""
		}
		var parts []string
		for _, n := range names {
			parts = append(parts, `{"id": "1", "name": "`+n+`"}`)
		}
		return `, "Tag": [` + strings.Join(parts, ", ") + `]`
	}
	attr := `"uuid": "` + uuid + `", "type": "` + typ + `", "value": "` + value + `", "to_ids": true, "timestamp": "1614599635"` + tags(attrTags)
	ev := ""
	if org != "" {
		ev = `, "Event": {"id": "1", "orgc_id": ` + org + `, "org_id": "99"` + tags(eventTags) + `}`
	}
	return []byte(`{"Attribute": {` + attr + `}` + ev + `, "action": "` + action + `"}`)
}

const (
	uuidA = "5e1f2787-fcfc-4718-a58a-00b4c0a82f06"
	uuidB = "6a3c1a52-0c1e-4d0e-9a51-2f1d0b7c9e11"
)

// TestFilterSemantics: orgs on the creator org, types, tags; AND inside a
// filter, OR inside each list and between filters.
func TestFilterSemantics(t *testing.T) {
	filters := []Filter{
		{Orgs: []string{"1", "25"}, Types: []string{"domain", "hostname"}},
		{Types: []string{"ip-dst"}, Tags: []string{"TLP:RED", "tlp:amber"}},
	}
	for _, c := range []struct {
		name string
		in   []byte
		pass bool
	}{
		{"org and type match (first filter)", attrMsg("add", uuidA, "domain", "x.example", `"1"`, nil, nil), true},
		{"org as a number", attrMsg("add", uuidA, "domain", "x.example", `25`, nil, nil), true},
		{"org with a leading zero", attrMsg("add", uuidA, "domain", "x.example", `"025"`, nil, nil), true},
		{"other org (the owner org does not count)", attrMsg("add", uuidA, "domain", "x.example", `"2"`, nil, nil), false},
		{"org matches, type does not", attrMsg("add", uuidA, "url", "http://x", `"1"`, nil, nil), false},
		{"second filter: type and tag", attrMsg("add", uuidB, "ip-dst", "6.6.6.6", `"7"`, []string{"tlp:red"}, nil), true},
		{"second filter: tag case-insensitive", attrMsg("add", uuidB, "ip-dst", "6.6.6.6", `"7"`, []string{"TLP:AMBER"}, nil), true},
		{"second filter: the event's tag", attrMsg("add", uuidB, "ip-dst", "6.6.6.6", `"7"`, nil, []string{"tlp:red"}), true},
		{"second filter: no tag", attrMsg("add", uuidB, "ip-dst", "6.6.6.6", `"7"`, nil, nil), false},
		{"second filter: other tag", attrMsg("add", uuidB, "ip-dst", "6.6.6.6", `"7"`, []string{"tlp:green"}, nil), false},
		{"no filter matches", attrMsg("add", uuidB, "ip-src", "6.6.6.6", `"1"`, []string{"tlp:red"}, nil), false},
	} {
		ind, err := newProcessor(filters).process(c.in, time.Now())
		if pass := err == nil; pass != c.pass {
			t.Errorf("%s: passed %v (%v), want %v", c.name, pass, err, c.pass)
		}
		if err != nil {
			var sk *skip
			if !errors.As(err, &sk) || sk.cause != causeFiltered {
				t.Errorf("%s: %v, want %s", c.name, err, causeFiltered)
			}
		} else if ind == nil {
			t.Errorf("%s: no indicator", c.name)
		}
	}

	// No filters, or an empty filter, let everything through.
	for _, fs := range [][]Filter{nil, {{}}} {
		if _, err := newProcessor(fs).process(attrMsg("add", uuidA, "url", "http://x", `"3"`, nil, nil), time.Now()); err != nil {
			t.Errorf("filters %v: %v", fs, err)
		}
	}
}

// TestFilterMemory: a hard delete has no Event. It follows the decision
// made for the attribute before; an attribute never seen is matched on
// what the delete carries. An edit that takes a published attribute out of
// every filter withdraws it.
func TestFilterMemory(t *testing.T) {
	filters := []Filter{{Orgs: []string{"1"}, Types: []string{"domain"}}}
	now := time.Now()
	type step struct {
		in   []byte
		want string // "", "EDIT", "REMOVE" or "filtered"
	}
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"published, then hard-deleted", []step{
			{attrMsg("add", uuidA, "domain", "x.example", `"1"`, nil, nil), ""},
			{attrMsg("delete", uuidA, "domain", "x.example", "", nil, nil), "REMOVE"},
		}},
		{"filtered out, then hard-deleted", []step{
			{attrMsg("add", uuidA, "domain", "x.example", `"2"`, nil, nil), "filtered"},
			{attrMsg("delete", uuidA, "domain", "x.example", "", nil, nil), "filtered"},
		}},
		{"unknown, hard-deleted, type matches", []step{
			{attrMsg("delete", uuidA, "domain", "x.example", "", nil, nil), "REMOVE"},
		}},
		{"unknown, hard-deleted, type does not match", []step{
			{attrMsg("delete", uuidA, "url", "http://x", "", nil, nil), "filtered"},
		}},
		{"edited out of the filter", []step{
			{attrMsg("add", uuidA, "domain", "x.example", `"1"`, nil, nil), ""},
			{attrMsg("edit", uuidA, "domain", "x.example", `"2"`, nil, nil), "REMOVE"},
			{attrMsg("edit", uuidA, "domain", "x.example", `"2"`, nil, nil), "filtered"},
			{attrMsg("edit", uuidA, "domain", "x.example", `"1"`, nil, nil), "EDIT"},
		}},
		{"soft-deleted after leaving the filter", []step{
			{attrMsg("add", uuidA, "domain", "x.example", `"2"`, nil, nil), "filtered"},
			{attrMsg("soft-delete", uuidA, "domain", "x.example", `"2"`, nil, nil), "filtered"},
		}},
		{"removed, then hard-deleted", []step{
			{attrMsg("add", uuidA, "domain", "x.example", `"1"`, nil, nil), ""},
			{attrMsg("soft-delete", uuidA, "domain", "x.example", `"1"`, nil, nil), "REMOVE"},
			{attrMsg("delete", uuidA, "domain", "x.example", "", nil, nil), "filtered"},
		}},
	} {
		p := newProcessor(filters)
		for i, s := range c.steps {
			ind, err := p.process(s.in, now)
			got := "filtered"
			if err == nil {
				got = string(ind.Update)
			} else if sk := (*skip)(nil); !errors.As(err, &sk) || sk.cause != causeFiltered {
				t.Errorf("%s, step %d: %v", c.name, i, err)
				continue
			}
			if got != s.want {
				t.Errorf("%s, step %d: got %q, want %q", c.name, i, got, s.want)
			}
		}
	}
}

func TestRecallIsBounded(t *testing.T) {
	r := newRecall(3)
	for _, k := range []string{"a", "b", "c", "d"} {
		r.put(k, true)
	}
	if _, ok := r.get("a"); ok {
		t.Error("the oldest key was kept")
	}
	for _, k := range []string{"b", "c", "d"} {
		if v, ok := r.get(k); !ok || !v {
			t.Errorf("%s lost", k)
		}
	}
	r.put("c", false)
	if v, _ := r.get("c"); v {
		t.Error("update lost")
	}
	if len(r.m) != 3 || len(r.ring) != 3 {
		t.Errorf("size %d/%d", len(r.m), len(r.ring))
	}
}
