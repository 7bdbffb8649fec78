package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// CheckHost accepts an IP literal or a syntactically valid host name, for
// plugins' Init: it never resolves (Init must not touch the network).
func CheckHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	if h == "" {
		return errors.New("host is empty: want an IP address or a host name")
	}
	if len(h) > 253 {
		return fmt.Errorf("host %.32q…: longer than 253 characters", h)
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		ok := label != "" && len(label) <= 63 && label[0] != '-' && label[len(label)-1] != '-'
		for i := 0; ok && i < len(label); i++ {
			c := label[i]
			ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
		}
		if !ok {
			return fmt.Errorf("host %q: not an IP address or a valid host name", h)
		}
	}
	return nil
}
