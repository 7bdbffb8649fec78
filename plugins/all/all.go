// Package all links every compiled-in plugin into the binary; each plugin
// registers itself from its init().
package all

import (
	_ "github.com/threatbus/threatbus/plugins/apps/misp"          // MISP: indicators in, sightings back, snapshots from REST
	_ "github.com/threatbus/threatbus/plugins/apps/zeek"          // Zeek over its WebSocket API: intel in, sightings back
	_ "github.com/threatbus/threatbus/plugins/backbones/cluster"  // several bus processes act as one bus (protoactor cluster)
	_ "github.com/threatbus/threatbus/plugins/backbones/rabbitmq" // several hosts, one stream

	_ "github.com/threatbus/threatbus/plugins/apps/zmq"        // apps speaking the Threat Bus ZeroMQ protocol
	_ "github.com/threatbus/threatbus/plugins/backbones/inmem" // the default backbone
)
