package zmq

import "testing"

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
