package misp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

// TestReplyMessage: MISP's reason is kept whichever field carries it; its
// failure replies (saveFailResponse) put a generic text in message and name
// and the reason in errors.
func TestReplyMessage(t *testing.T) {
	for _, c := range []struct{ reply, want string }{
		{`{"saved": false, "name": "Could not add Sighting", "message": "Could not add Sighting", "url": "/sightings/add", "errors": "No valid attributes found that match the criteria."}`,
			"Could not add Sighting: No valid attributes found that match the criteria."},
		{`{"name": "No valid attributes found.", "message": "No valid attributes found.", "url": "/sightings/add"}`, "No valid attributes found."},
		{`{"name": "Authentication failed. Please make sure you pass the API key.", "message": "Authentication failed. Please make sure you pass the API key.", "url": "/events"}`,
			"Authentication failed. Please make sure you pass the API key."},
		{`{"name": "Only a name"}`, "Only a name"},
		{`{"errors": "only errors"}`, "only errors"},
		{`{"message": "Could not add Attribute", "errors": {"value": ["Value not in the right type/format."]}}`,
			`Could not add Attribute: {"value":["Value not in the right type/format."]}`},
		{`{"message": "same", "errors": "same"}`, "same"},
		{`not json`, "not json"},
		{``, "(empty reply)"},
	} {
		if got := replyMessage([]byte(c.reply)); got != c.want {
			t.Errorf("replyMessage(%s) = %q, want %q", c.reply, got, c.want)
		}
	}
}

// TestCancelledRequestIsNotAFailure: a request the app gives up (its Run
// context ends while a restSearch is in flight) leaves Ready alone; one that
// runs out of api.timeout does not.
func TestCancelledRequestIsNotAFailure(t *testing.T) {
	arrived, release := make(chan struct{}, 8), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		select { // a slow restSearch
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	app := newTestApp(t, freePort(t), srv.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Snapshot(ctx, plugins.SnapshotRequest{ID: "s1", Type: messages.SnapshotType_SNAPSHOT_TYPE_INDICATOR, Window: time.Hour},
			func([]byte) error { return nil })
	}()
	<-arrived
	cancel()
	<-done
	if err := app.st.rest.ready(); err != nil {
		t.Errorf("a cancelled request made the REST API failing: %v", err)
	}

	rest := newRESTClient(srv.URL, testKey, nil, 50*time.Millisecond)
	if _, err := rest.post(context.Background(), "/attributes/restSearch", []byte(`{}`)); err == nil {
		t.Fatal("a request that outlived api.timeout succeeded")
	}
	if err := rest.ready(); err == nil {
		t.Error("a request that ran out of api.timeout did not count as a failure")
	}
}
