package misp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// message is one attribute update as MISP publishes it on ZeroMQ and Kafka:
// {"Attribute": {…, "Tag": [...]}, "Event": {…, "Orgc": {…}}, "action": A}.
// A hard delete carries no Event.
type message struct {
	Attribute *attribute `json:"Attribute"`
	Event     *event     `json:"Event"`
	Action    flexString `json:"action"`
}

// attribute is the part of a MISP attribute the plugin reads. restSearch
// nests the attribute's event inside it.
type attribute struct {
	UUID      flexString `json:"uuid"`
	Type      flexString `json:"type"`
	Value     flexString `json:"value"`
	Value1    flexString `json:"value1"`
	Value2    flexString `json:"value2"`
	ToIDs     flexBool   `json:"to_ids"`
	Deleted   flexBool   `json:"deleted"`
	Timestamp flexInt    `json:"timestamp"`
	Tag       tagList    `json:"Tag"`
	Event     *event     `json:"Event"`
}

type event struct {
	OrgcID flexString `json:"orgc_id"`
	Orgc   *struct {
		ID flexString `json:"id"`
	} `json:"Orgc"`
	Tag tagList `json:"Tag"`
}

// creator returns the id of the event's creator organisation.
func (e *event) creator() string {
	if e.OrgcID != "" {
		return string(e.OrgcID)
	}
	if e.Orgc != nil {
		return string(e.Orgc.ID)
	}
	return ""
}

// errMalformed marks payloads that are not a MISP attribute message.
var errMalformed = errors.New("not a MISP attribute message")

// decodeMessage decodes an attribute message. MISP writes numbers and
// booleans sometimes as strings ("id": "1", "to_ids": "1") and sometimes
// as JSON values: both are accepted.
func decodeMessage(b []byte) (*message, error) {
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if m.Attribute == nil {
		return nil, fmt.Errorf("%w: no Attribute object", errMalformed)
	}
	return &m, nil
}

// decodeAttribute decodes one attribute of a restSearch answer.
func decodeAttribute(b []byte) (*attribute, error) {
	var a attribute
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	return &a, nil
}

// flexString is a JSON string, number or boolean read as text; null is "".
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return errors.New("empty value")
	}
	switch b[0] {
	case '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	case 'n':
		*s = ""
	case '{', '[':
		return fmt.Errorf("want a string or number, got %s", kind(b))
	default: // number, true, false: as written
		*s = flexString(b)
	}
	return nil
}

// flexBool is true/false, 1/0, "1"/"0", "true"/"false"; null or "" is unset.
type flexBool struct {
	v, set bool
}

func (f *flexBool) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(string(s))) {
	case "":
		*f = flexBool{}
	case "true", "1":
		*f = flexBool{v: true, set: true}
	case "false", "0":
		*f = flexBool{v: false, set: true}
	default:
		return fmt.Errorf("want a boolean, got %s", b)
	}
	return nil
}

// flexInt is an integer as a JSON number or a decimal string; null or "" is
// unset.
type flexInt struct {
	v   int64
	set bool
}

func (f *flexInt) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	t := strings.TrimSpace(string(s))
	if t == "" {
		*f = flexInt{}
		return nil
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		*f = flexInt{v: n, set: true}
		return nil
	}
	// 1614599635.0 and 1.614599635e9 are integers too.
	x, err := strconv.ParseFloat(t, 64)
	if err != nil || x != math.Trunc(x) || math.Abs(x) > 1<<62 {
		return fmt.Errorf("want an integer, got %s", b)
	}
	*f = flexInt{v: int64(x), set: true}
	return nil
}

// tagList is MISP's "Tag": a list of {"name": …} objects (plain strings are
// accepted too); null is empty. present tells an absent list from an empty
// one, which matters for deletes that carry less than the original add.
type tagList struct {
	names   []string
	present bool
}

func (t *tagList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*t = tagList{}
		return nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("Tag: want a list, got %s", kind(b))
	}
	out := tagList{present: true, names: make([]string, 0, len(raw))}
	for _, r := range raw {
		r = bytes.TrimSpace(r)
		if len(r) > 0 && r[0] == '{' {
			var tg struct {
				Name flexString `json:"name"`
			}
			if err := json.Unmarshal(r, &tg); err != nil {
				return fmt.Errorf("Tag: %w", err)
			}
			out.names = append(out.names, string(tg.Name))
			continue
		}
		var s flexString
		if err := s.UnmarshalJSON(r); err != nil {
			return fmt.Errorf("Tag: %w", err)
		}
		out.names = append(out.names, string(s))
	}
	*t = out
	return nil
}

func kind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
