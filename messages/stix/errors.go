package stix

import (
	"errors"
	"fmt"

	"github.com/threatbus/threatbus/messages"
)

// Sentinel errors, so that callers can tell a malformed message (drop it and
// tell the sender) from a type the bus does not route (ignore or forward).
var (
	// ErrMalformedJSON wraps every error caused by input that is not one
	// well-formed JSON object.
	ErrMalformedJSON = errors.New("stix: malformed JSON")
	// ErrUnknownType is returned for a "type" this package has no topic for.
	ErrUnknownType = messages.ErrUnknownType
)

// FieldError reports a property that is missing or invalid. Field is the JSON
// property name exactly as on the wire, so an operator can grep the message.
type FieldError struct {
	Object string // "indicator", "sighting", "snapshotrequest", …
	Field  string
	Err    error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("stix: %s: property %q: %v", e.Object, e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(object, field string, format string, args ...any) *FieldError {
	return &FieldError{Object: object, Field: field, Err: fmt.Errorf(format, args...)}
}

// syntaxError is a JSON syntax error at a byte offset of the message.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("stix: malformed JSON at byte %d: %s", e.off, e.msg)
}

func (e *syntaxError) Is(target error) bool { return target == ErrMalformedJSON }

// PatternError is a STIX pattern that does not parse. Column is 1-based and
// counts characters (not bytes) so it matches what an editor shows; Offset is
// the byte offset for programs.
type PatternError struct {
	Column int
	Offset int
	Msg    string
}

func (e *PatternError) Error() string {
	return fmt.Sprintf("stix pattern: column %d: %s", e.Column, e.Msg)
}
