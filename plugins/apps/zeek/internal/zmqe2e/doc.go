// Package zmqe2e holds only an end-to-end test: a sighting from a Zeek
// reaches an app subscribed through the zmq app, the way vast-threatbus and
// friends receive them. It lives apart from package zeek so that the Zeek
// plugin's own tests do not depend on another plugin.
package zmqe2e
