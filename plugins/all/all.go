// Package all links every compiled-in plugin into the binary; each plugin
// registers itself from its init().
package all

import (
	_ "github.com/threatbus/threatbus/plugins/backbones/inmem" // the default backbone
)
