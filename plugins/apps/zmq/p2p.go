package zmq

import (
	"crypto/rand"
	"fmt"
)

// p2pLength is the length of an app's private topic, as in the original.
const p2pLength = 32

// newP2P returns a fresh private topic: 32 lowercase ASCII letters from
// crypto/rand. The topic is the app's only credential for heartbeat and
// unsubscribe, and the prefix of everything it receives, so it must not be
// guessable (the original used Python's `random`).
func newP2P() (string, error) {
	var out [p2pLength]byte
	var buf [64]byte
	n := 0
	for n < p2pLength {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("zmq: random topic: %w", err)
		}
		for _, b := range buf {
			// 234 = 9*26: rejecting the rest keeps every letter equally likely.
			if b >= 234 {
				continue
			}
			out[n] = 'a' + b%26
			if n++; n == p2pLength {
				break
			}
		}
	}
	return string(out[:]), nil
}

// isP2P reports whether s has the shape of a private topic.
func isP2P(s string) bool {
	if len(s) != p2pLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return true
}
