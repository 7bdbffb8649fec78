package zeek

import (
	"crypto/rand"
	"fmt"
)

// newP2P returns a Zeek's private topic: the topic it asked for and ten
// random lowercase letters, as the original made them, but from crypto/rand
// (the original used Python's random): the topic names what one Zeek gets,
// and the bus answers unsubscribes for it.
func newP2P(topic string) (string, error) {
	out := make([]byte, len(topic), len(topic)+p2pSuffixLength)
	copy(out, topic)
	var buf [32]byte
	for len(out) < len(topic)+p2pSuffixLength {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("zeek: random topic: %w", err)
		}
		for _, b := range buf {
			// 234 = 9·26: rejecting the rest keeps every letter equally likely.
			if b >= 234 {
				continue
			}
			out = append(out, 'a'+b%26)
			if len(out) == len(topic)+p2pSuffixLength {
				break
			}
		}
	}
	return string(out), nil
}
