package actors

// Test hooks for the external test package.

var wellKnown = map[string]string{"daemon": daemonID, "bus": busID, "router": routerID, "backbone": backboneID, "apps": appsID}

// SendTo sends msg to a well-known actor ("router", "bus", "apps",
// "backbone", "daemon"), or to the actor of id who, as if from outside the
// tree.
func (d *Daemon) SendTo(who string, msg any) {
	id, ok := wellKnown[who]
	if !ok {
		id = who
	}
	d.rt.root.Send(d.rt.system.NewLocalPID(id), msg)
}

// CrashActor makes a well-known actor, or the app named "apps/<name>", panic
// on its next message, whether or not fault injection is enabled.
func (d *Daemon) CrashActor(who string) {
	id, ok := wellKnown[who]
	if !ok {
		id = busID + "/" + who
	}
	d.rt.root.Send(d.rt.system.NewLocalPID(id), &crashRequest{reason: "test"})
}

// Queued is the number of bus messages sent to actors and not yet received.
func (d *Daemon) Queued() int64 { return d.rt.queued.Load() }
