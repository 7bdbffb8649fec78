// Package actors is the runtime of threatbus: the supervision tree, the router
// and the subscriber actors, built on protoactor-go. Plugins never see it;
// they get the plugins.Bus interface.
//
// The tree:
//
//	daemon                 top actor; its guardian resumes it, so nothing escalates out of the process
//	└── bus                owns snapshot bookkeeping
//	    ├── router         its mailbox is the inq; holds the subscription table
//	    │   └── backbone   the configured backbone plugin
//	    └── apps           spawns app actors and the subscribers they ask for
//	        ├── <app>      one per configured app; runs the plugin's Run loop
//	        └── <app>/sub… one per subscription; its mailbox is the outq
//
// Subscribers are children of apps rather than of their app so that an app
// restart does not end its subscriptions.
//
// Supervision policy (supervision.go). Plugin actors (the backbone, each
// app) and subscribers are restarted after a panic or a failed Run: their
// state is a connection, and a fresh one is the cure. Restarts wait a backoff
// that doubles with each failure in the restart window, up to a cap, with
// jitter; the mailbox is held meanwhile. An app that fails more than
// max_restarts times in the window is stopped and reported; one that fails
// with a *plugins.ConfigError is stopped at once, since restarting cannot fix
// configuration. The backbone and subscribers are never given up on. The
// bus's own actors (daemon, bus, router, apps) are resumed instead: their
// state is the bus's state, and restarting a parent stops its children, which
// would end every subscription. The daemon's guardian resumes it too, so
// nothing escalates out of the process. Every panic is logged once, with its
// stack, by the recovery middleware, and the bus messages lost with it (a
// Publish or Deliver carries a batch) are counted as dropped (actor_crash).
//
// This package must not know any plugin: it works from the interfaces of
// package plugins and the configuration of package config.
package actors
