package zmq

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Management statuses, exactly as the original answers them.
const (
	statusSuccess = "success"
	statusError   = "error"
	statusUnknown = "unknown request"
)

// Management actions.
const (
	actionSubscribe   = "subscribe"
	actionUnsubscribe = "unsubscribe"
	actionHeartbeat   = "heartbeat"
)

// request is a decoded management request that can be acted on.
type request struct {
	action string
	// topics holds the requested topics for subscribe (at least one,
	// deduplicated, in order) and the private topic for unsubscribe and
	// heartbeat (exactly one).
	topics []string
	// snapshot is the look-back window of a subscribe; 0 asks for none.
	snapshot time.Duration
}

// maxSnapshotDays is the largest window a time.Duration holds. Larger
// values (up to Python's timedelta limit, which the original accepted) ask
// for everything anyway, so they are clamped rather than refused.
const maxSnapshotDays = int64(math.MaxInt64 / int64(24*time.Hour))

// pythonMaxDays is the largest |days| Python's timedelta accepts; the
// original answered "error" beyond it (OverflowError).
const pythonMaxDays = 999999999

// decodeRequest decodes one management request the way the original did
// (threatbus_zmq_app.message_mapping.map_management_message, then the
// handlers), so that every client sees the same status for the same bytes:
//
//	snapshot = int(msg.get("snapshot", 0))   # any failure → "error"
//	if action == "heartbeat" and topic: …    # Python truthiness of topic
//	if action == "subscribe" and topic: …
//	elif action == "unsubscribe" and topic: …
//	else → "unknown request"
//
// It returns the request and "" when it can be acted on, or the status to
// answer with. See README.md for where this deliberately differs.
func decodeRequest(b []byte) (request, string) {
	// Python decodes the frame as UTF-8 before parsing; Go's decoder would
	// silently replace invalid bytes instead.
	if !utf8.Valid(b) {
		return request{}, statusError
	}
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		// Not JSON, or JSON that is not an object: msg.get fails.
		return request{}, statusError
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return request{}, statusError
	}
	var req request
	if raw, ok := fields["snapshot"]; ok {
		days, ok := pythonInt(raw)
		if !ok || days > pythonMaxDays || days < -pythonMaxDays {
			return request{}, statusError
		}
		// A negative window asked the original for no snapshot.
		days = max(days, 0)
		req.snapshot = time.Duration(min(days, maxSnapshotDays)) * 24 * time.Hour
	}
	var action string
	if raw, ok := fields["action"]; ok && len(raw) > 0 && raw[0] == '"' {
		_ = json.Unmarshal(raw, &action) // valid: checked by the outer Unmarshal
	}
	topic, hasTopic := fields["topic"]
	if !hasTopic || !truthy(topic) {
		return request{}, statusUnknown
	}
	switch action {
	case actionSubscribe:
		topics, ok := subscribeTopics(topic)
		if !ok {
			return request{}, statusError
		}
		req.topics = topics
	case actionUnsubscribe, actionHeartbeat:
		// The original looked the topic up in a dict: a list is
		// unhashable, a number is never a key. Both answer "error".
		var s string
		if topic[0] != '"' || json.Unmarshal(topic, &s) != nil {
			return request{}, statusError
		}
		req.topics = []string{s}
	default:
		return request{}, statusUnknown
	}
	req.action = action
	return req, ""
}

// subscribeTopics accepts a string or a non-empty list of strings.
func subscribeTopics(raw json.RawMessage) ([]string, bool) {
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return []string{s}, true
	case '[':
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return nil, false
		}
		seen := make(map[string]bool, len(elems))
		out := make([]string, 0, len(elems))
		for _, e := range elems {
			var s string
			if len(e) == 0 || e[0] != '"' || json.Unmarshal(e, &s) != nil {
				return nil, false
			}
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		return out, len(out) > 0
	}
	return nil, false
}

// truthy is Python's truth value of a JSON value: null, false, 0, "", []
// and {} are false.
func truthy(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	switch raw[0] {
	case 'n', 'f':
		return false
	case 't':
		return true
	case '"':
		return len(raw) > 2
	case '[', '{':
		inner := bytes.TrimSpace(raw[1 : len(raw)-1])
		return len(inner) > 0
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return err != nil || f != 0 // a huge number overflows but is not zero
}

// pythonInt is Python's int() of a JSON value: integers as they are,
// floats truncated toward zero, booleans 0/1, strings of optional
// whitespace, sign and decimal digits (single underscores between digits
// allowed). Everything else fails, as do non-finite floats. Values beyond
// int64 fail too: they are far beyond the day limit anyway.
func pythonInt(raw json.RawMessage) (int64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0, false
	}
	switch c := raw[0]; {
	case c == 't':
		return 1, true
	case c == 'f':
		return 0, true
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		return pythonIntString(s)
	case c == '-' || '0' <= c && c <= '9':
		s := string(raw)
		if !strings.ContainsAny(s, ".eE") {
			n, err := strconv.ParseInt(s, 10, 64)
			return n, err == nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || math.Abs(f) >= 1<<62 {
			return 0, false
		}
		return int64(f), true // conversion truncates toward zero, as int() does
	}
	return 0, false // null, list, object
}

func pythonIntString(s string) (int64, bool) {
	s = strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f })
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return 0, false
	}
	digits := strings.ReplaceAll(s, "_", "")
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// Replies, byte for byte as Python's json.dumps writes them (separators
// ", " and ": ", keys in this order).

func statusReply(status string) []byte {
	return []byte(`{"status": "` + status + `"}`)
}

func subscribeReply(p2p string, pubPort, subPort int) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"topic": "`...)
	b = append(b, p2p...) // lowercase letters: nothing to escape
	b = append(b, `", "pub_port": `...)
	b = strconv.AppendInt(b, int64(pubPort), 10)
	b = append(b, `, "sub_port": `...)
	b = strconv.AppendInt(b, int64(subPort), 10)
	b = append(b, `, "status": "success"}`...)
	return b
}
