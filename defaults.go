// Package threatbus holds the default configuration, embedded so that the
// binary starts on it when no config file is at hand. The code is in actors,
// messages, plugins and cmd/threatbus.
package threatbus

import _ "embed"

// DefaultConfig is config.toml as it was at build time.
//
//go:embed config.toml
var DefaultConfig []byte
