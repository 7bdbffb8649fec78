// Package inmem is the in-memory backbone, the default: it carries every
// message published on this bus to this bus's subscribers and nowhere else.
// It holds no queue of its own; the router's and subscribers' mailboxes are
// the queues.
package inmem

import (
	"context"
	_ "embed"
	"errors"
	"sync/atomic"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/plugins"
)

//go:embed sample.conf
var sampleConfig string

// Name is the plugin's registry key and config table name.
const Name = "inmem"

func init() {
	plugins.AddBackbone(Name, func() plugins.Backbone { return &Backbone{} })
}

// Backbone is the in-memory backbone. It has no settings.
type Backbone struct {
	deliver atomic.Pointer[func(*messages.Envelope)]
}

// SampleConfig implements plugins.Plugin.
func (*Backbone) SampleConfig() string { return sampleConfig }

// Init implements plugins.Plugin.
func (*Backbone) Init() error { return nil }

// Start implements plugins.Backbone.
func (b *Backbone) Start(_ context.Context, deliver func(*messages.Envelope)) error {
	b.deliver.Store(&deliver)
	return nil
}

// errStopped is returned by Publish outside Start…Stop.
var errStopped = errors.New("inmem: backbone is not started")

// Publish implements plugins.Backbone: the message is delivered locally, at once.
func (b *Backbone) Publish(_ context.Context, env *messages.Envelope) error {
	d := b.deliver.Load()
	if d == nil {
		return errStopped
	}
	(*d)(env)
	return nil
}

// Stop implements plugins.Backbone. Every accepted message has already been
// handed on, so there is nothing to drain.
func (b *Backbone) Stop(context.Context) error {
	b.deliver.Store(nil)
	return nil
}
