package misp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins"
)

// searchAttempts bounds the tries of one restSearch page that fails
// transiently; the snapshot fails after them.
const searchAttempts = 3

// Snapshot implements plugins.Snapshotter: an indicator snapshot is one
// POST /attributes/restSearch per filter (one in all without filters),
// paged, each attribute mapped like an "add" and replied as an indicator.
// MISP keeps no sightings the bus could replay, so sighting snapshots are
// not answered.
func (a *App) Snapshot(ctx context.Context, req plugins.SnapshotRequest, reply func(body []byte) error) error {
	st := a.st
	if st == nil || req.Type != messages.SnapshotType_SNAPSHOT_TYPE_INDICATOR {
		return nil
	}
	select { // at most maxSearches at a time against MISP
	case st.search <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-st.search }()
	st.counts.snapRequests.Add(1)
	log := st.logger()
	start := time.Now()
	filters := a.Filter
	if len(filters) == 0 {
		filters = []Filter{{}}
	}
	seen := map[string]bool{} // an attribute matching two filters is sent once
	sent := 0
	for i, f := range filters {
		n, err := a.searchFilter(ctx, req, f, seen, reply)
		sent += n
		if err != nil {
			st.counts.snapFailed.Add(1)
			return fmt.Errorf("misp: snapshot %s: filter %d: %w", req.ID, i, err)
		}
	}
	log.Info("misp: snapshot answered from MISP", "snapshot", req.ID, "window", req.Window, "indicators", sent, "took", time.Since(start).Truncate(time.Millisecond))
	return nil
}

// searchBody is the restSearch request of one filter and page.
type searchBody struct {
	ReturnFormat       string         `json:"returnFormat"`
	ToIDs              bool           `json:"to_ids"`
	AttributeTimestamp string         `json:"attribute_timestamp,omitempty"`
	Type               []string       `json:"type,omitempty"`
	Org                []string       `json:"org,omitempty"`
	Tags               map[string]any `json:"tags,omitempty"`
	Page               int            `json:"page"`
	Limit              int            `json:"limit"`
}

func (a *App) searchFilter(ctx context.Context, req plugins.SnapshotRequest, f Filter, seen map[string]bool, reply func([]byte) error) (int, error) {
	st := a.st
	limit := a.Snapshots.PageSize
	body := searchBody{
		ReturnFormat:       "json",
		ToIDs:              true,
		AttributeTimestamp: timeDelta(req.Window),
		Type:               f.Types,
		Org:                f.Orgs,
		Limit:              limit,
	}
	if len(f.Tags) > 0 {
		body.Tags = map[string]any{"OR": f.Tags}
	}
	sent := 0
	pages := map[string]bool{} // what this filter's pages returned so far
	for page := 1; ; page++ {
		body.Page = page
		attrs, err := a.searchPage(ctx, body)
		if err != nil {
			return sent, fmt.Errorf("page %d: %w", page, err)
		}
		fresh := 0
		now := time.Now()
		for _, raw := range attrs {
			ind, key, err := snapshotIndicator(raw, now)
			if key != "" {
				if !pages[key] {
					pages[key] = true
					fresh++
				}
				if seen[key] {
					continue // sent for an earlier filter or page
				}
				seen[key] = true
			}
			if err != nil {
				st.skipped(st.counts.snapSkipped, "snapshot", err)
				continue
			}
			if err := reply(ind.Raw); err != nil {
				return sent, err // the request expired or the bus stops
			}
			sent++
			st.counts.snapIndicators.Add(1)
		}
		if len(attrs) < limit {
			return sent, nil
		}
		if fresh == 0 {
			// A full page of attributes already seen: this MISP ignores
			// "page" and would answer the same page forever.
			st.logger().Warn("misp: restSearch returned a page of attributes already seen; stopping the snapshot there", "page", page, "limit", limit)
			return sent, nil
		}
	}
}

// snapshotIndicator maps one attribute of a search result. key is the
// attribute's uuid, for de-duplication ("" if unreadable).
func snapshotIndicator(raw json.RawMessage, now time.Time) (*stix.Indicator, string, error) {
	attr, err := decodeAttribute(raw)
	if err != nil {
		return nil, "", &skip{cause: causeMalformed, err: err}
	}
	key := string(bytes.ToLower([]byte(attr.UUID)))
	switch {
	case attr.Deleted.v:
		return nil, key, skipf(causeDeleted, "attribute %.40s is deleted", key)
	case !attr.ToIDs.v:
		return nil, key, skipf(causeToIDs, "attribute %.40s has to_ids = false", key)
	}
	ind, err := indicatorFor(attr, stix.UpdateNone, now)
	return ind, key, err
}

// searchPage posts one restSearch request, retrying transient failures.
func (a *App) searchPage(ctx context.Context, body searchBody) ([]json.RawMessage, error) {
	st := a.st
	req, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	wait := a.Sightings.RetryMin.D()
	for attempt := 1; ; attempt++ {
		reply, err := st.rest.post(ctx, "/attributes/restSearch", req)
		if err == nil {
			return parseSearch(reply)
		}
		if ctx.Err() != nil || !transient(err) || attempt == searchAttempts {
			return nil, err
		}
		st.logger().Debug("misp: restSearch failed; retrying", "attempt", attempt, "error", err)
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
		wait = min(2*wait, a.Sightings.RetryMax.D())
	}
}

// parseSearch reads {"response": {"Attribute": [...]}}. An empty result
// may come as {"response": []}; some MISP versions list
// {"Attribute": {…}} objects instead.
func parseSearch(reply []byte) ([]json.RawMessage, error) {
	var r struct {
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return nil, fmt.Errorf("unreadable restSearch reply: %w", err)
	}
	resp := bytes.TrimSpace(r.Response)
	if len(resp) == 0 {
		return nil, errors.New(`restSearch reply without "response"`)
	}
	switch resp[0] {
	case '{':
		var obj struct {
			Attribute []json.RawMessage `json:"Attribute"`
		}
		if err := json.Unmarshal(resp, &obj); err != nil {
			return nil, fmt.Errorf("restSearch reply: %w", err)
		}
		return obj.Attribute, nil
	case '[':
		var list []struct {
			Attribute json.RawMessage `json:"Attribute"`
		}
		if err := json.Unmarshal(resp, &list); err != nil {
			return nil, fmt.Errorf("restSearch reply: %w", err)
		}
		out := make([]json.RawMessage, 0, len(list))
		for _, e := range list {
			if len(e.Attribute) > 0 {
				out = append(out, e.Attribute)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("restSearch reply: response is %s", kind(resp))
}

// timeDelta writes a look-back window the way MISP's timestamp filters
// take relative times: "7d", "12h", "30m" or "90s". Relative, so that the
// bus's and MISP's clocks need not agree.
func timeDelta(d time.Duration) string {
	s := int64(d / time.Second)
	if s <= 0 {
		return ""
	}
	for _, u := range []struct {
		secs int64
		unit string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}} {
		if s%u.secs == 0 {
			return strconv.FormatInt(s/u.secs, 10) + u.unit
		}
	}
	return strconv.FormatInt(s, 10) + "s"
}
