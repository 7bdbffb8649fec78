// Package stix is the STIX 2.1 layer that every Threat Bus plugin shares: it
// routes, validates and creates the JSON objects that travel over the bus
// (Indicator, Sighting and the bus's own SnapshotRequest/SnapshotEnvelope),
// and it parses, inspects and builds STIX patterns.
//
// The bytes a message arrived with are the message. Decoders read the
// properties the bus acts on and keep the original slice in Raw; they never
// re-serialize it, because OpenCTI, MISP and friends attach properties this
// package does not know (x_opencti_*, markings, confidence …) and a bus that
// drops or rewrites them corrupts other people's data. For the same reason
// this package must not grow a "normalize and re-marshal" helper for
// received objects, must not log, and must not depend on a third-party STIX
// library: its job is to be a small, strict, allocation-conscious edge that
// the routing hot path (Peek) can call for every message. An edge that
// forwards what it receives and only needs a verdict, such as an app's
// inbound path, calls Validate: Peek's checks, the decoder's and optionally
// stricter UTF-8 and timestamp rules in a single pass over the bytes.
//
// Patterns are parsed by a hand-written recursive-descent parser for the
// whole STIX 2.1 patterning grammar (OASIS STIXPattern.g4). Its recursion is
// bounded (MaxPatternDepth) so that hostile input yields an error, never a
// stack overflow. Sinks such as Zeek or Suricata only understand point IoCs;
// PointIoC says whether a pattern is one and yields its canonical object path
// and value. Mappers build patterns with EqualityPattern, Equals, And, Or and
// NewPattern, which quote and escape so that every result parses again.
package stix
