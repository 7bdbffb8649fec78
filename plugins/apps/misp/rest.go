package misp

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// restClient talks to MISP's REST API with the spec's headers. It records
// whether MISP is reachable, for Ready.
type restClient struct {
	base    string
	key     string
	timeout time.Duration
	http    *http.Client

	mu           sync.Mutex
	failingSince time.Time // zero while the last request reached MISP
	lastFailure  string
	authRefused  string // MISP refused the key; cleared by a success
}

func newRESTClient(base, key string, tlsConf *tls.Config, timeout time.Duration) *restClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.MaxIdleConnsPerHost = 4
	// A redirect (http:// to https://, a moved MISP) would turn the POST
	// into a GET without body, or send the key elsewhere: refuse it and say
	// where to point api.url instead.
	noRedirect := func(req *http.Request, via []*http.Request) error {
		return fmt.Errorf("MISP redirects %s to %s: set api.url accordingly", via[0].URL.Redacted(), req.URL.Redacted())
	}
	return &restClient{base: base, key: key, timeout: timeout, http: &http.Client{Transport: tr, CheckRedirect: noRedirect}}
}

func (c *restClient) insecure() bool { return strings.HasPrefix(c.base, "http://") }

func (c *restClient) closeIdle() { c.http.CloseIdleConnections() }

// maxReply bounds what is read of one reply (a restSearch page of
// page_size attributes stays far below it).
const maxReply = 256 << 20

// statusError is a reply MISP sent with a non-2xx status, or a 2xx reply
// that says the request failed.
type statusError struct {
	Status  int
	Message string
}

func (e *statusError) Error() string {
	if e.Status == 0 {
		return "MISP: " + e.Message
	}
	return fmt.Sprintf("MISP answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// transient reports whether err may go away by itself: MISP is down, slow,
// overloaded or restarting. Other errors (4xx, a refusal in the reply) will
// not change when the same request is sent again.
func transient(err error) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return true // no answer at all: connection refused, timeout, TLS, …
	}
	return se.Status >= 500 || se.Status == http.StatusRequestTimeout || se.Status == http.StatusTooManyRequests
}

// post sends body to path and returns the reply of a 2xx answer. A request
// given up by its caller (ctx ended: the app stopping or restarting) says
// nothing about MISP, so it does not count as a failure for Ready; one that
// ran out of api.timeout does.
func (c *restClient) post(ctx context.Context, path string, body []byte) ([]byte, error) {
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", c.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if caller.Err() == nil {
			c.failed(err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err == nil && len(reply) > maxReply {
		err = fmt.Errorf("reply larger than %d bytes", maxReply)
	}
	if err != nil {
		err = fmt.Errorf("read MISP's reply to %s: %w", path, err)
		if caller.Err() == nil {
			c.failed(err)
		}
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &statusError{Status: resp.StatusCode, Message: replyMessage(reply)}
		c.failed(se)
		return nil, se
	}
	c.succeeded()
	return reply, nil
}

// replyMessage is MISP's explanation in an error reply: its "message" (else
// its "name") and its "errors", else the start of the body. MISP's failure
// replies (saveFailResponse) carry a generic message, "Could not add
// Sighting", and the reason in errors.
func replyMessage(b []byte) string {
	var r struct {
		Name    any `json:"name"`
		Message any `json:"message"`
		Errors  any `json:"errors"`
	}
	if json.Unmarshal(b, &r) == nil {
		msg := text(r.Message)
		if msg == "" {
			msg = text(r.Name)
		}
		if e := text(r.Errors); e != "" && e != msg {
			if msg == "" {
				return e
			}
			return msg + ": " + e
		}
		if msg != "" {
			return msg
		}
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty reply)"
	}
	return s
}

func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func (c *restClient) failed(err error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var se *statusError
	switch {
	case errors.As(err, &se) && refusedKey(se):
		c.authRefused = se.Error()
	case transient(err):
		if c.failingSince.IsZero() {
			c.failingSince = now
		}
		c.lastFailure = err.Error()
	}
}

// refusedKey recognises MISP's answers to a wrong or disabled API key.
func refusedKey(se *statusError) bool {
	return se.Status == http.StatusUnauthorized ||
		se.Status == http.StatusForbidden && strings.HasPrefix(se.Message, "Authentication failed")
}

func (c *restClient) succeeded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failingSince, c.lastFailure, c.authRefused = time.Time{}, "", ""
}

// ready reports a REST API that refuses the key or cannot be reached.
func (c *restClient) ready() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.authRefused != "":
		return fmt.Errorf("misp: MISP's REST API at %s refuses the API key: %s", c.base, c.authRefused)
	case !c.failingSince.IsZero():
		return fmt.Errorf("misp: MISP's REST API at %s is failing since %s: %s", c.base, c.failingSince.UTC().Format(time.RFC3339), c.lastFailure)
	}
	return nil
}
