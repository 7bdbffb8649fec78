// Package actors is the runtime of threatbus: the supervision tree, the router
// and the subscriber actors, built on protoactor-go. Plugins never see it;
// they get the plugins.Bus interface.
//
// The tree:
//
//	daemon                 top actor; its guardian restarts it, so nothing escalates out of the process
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
// Supervision policy: panics and failures of a plugin's Run restart the
// failing actor (the backbone under the router, an app under apps, router
// and apps under bus); a plugin that fails more than maxRestarts times within
// restartWindow is stopped and reported, and the rest of the bus keeps going.
// A plugin failure wrapped in a *ConfigError stops the plugin at once:
// restarting cannot fix configuration. Every panic is logged once, with its
// stack, by the recovery middleware.
//
// This package must not know any plugin: it works from the interfaces of
// package plugins and the configuration of package config.
package actors
