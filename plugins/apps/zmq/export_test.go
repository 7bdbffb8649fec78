package zmq

import (
	"testing"

	"github.com/threatbus/threatbus/plugins"
)

// DropCase is an inbound frame the spec says must be dropped.
type DropCase struct{ Name, Frame, Cause string }

// DropCases exports the spec's drop list to the socket tests.
func DropCases(t *testing.T) []DropCase {
	var out []DropCase
	for _, c := range dropCases(t) {
		out = append(out, DropCase{c.name, c.frame, c.cause})
	}
	return out
}

// Causes the socket tests check.
const (
	CauseMultipart       = causeMultipart
	CauseUnknownSnapshot = causeUnknownSnapshot
)

// BusSubscription is the bus subscription behind an app's private topic,
// for tests that end it from the bus's side; nil when there is none.
func (a *App) BusSubscription(p2p string) plugins.Subscription {
	if c := a.st.lookup(p2p); c != nil {
		return c.sub
	}
	return nil
}
