package rabbitmq_test

import (
	"testing"
	"time"

	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/tests/backbonetest"
)

// TestConformance runs the backbone conformance suite against the real
// broker, each scenario on its own exchange and queue.
func TestConformance(t *testing.T) {
	broker(t)
	backbonetest.Run(t, backbonetest.Features{
		New: func(t *testing.T) plugins.Backbone {
			return newBackbone(t, newNames(t), nil)
		},
		Quiet: 300 * time.Millisecond,
	})
}
