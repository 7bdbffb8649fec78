package inmem_test

import (
	"testing"

	"github.com/threatbus/threatbus/plugins"
	"github.com/threatbus/threatbus/plugins/backbones/inmem"
	"github.com/threatbus/threatbus/tests/backbonetest"
)

func TestConformance(t *testing.T) {
	backbonetest.Run(t, backbonetest.Features{
		New: func(*testing.T) plugins.Backbone { return &inmem.Backbone{} },
	})
}
