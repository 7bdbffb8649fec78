package rabbitmq_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// proxy forwards TCP connections to the broker, optionally terminating TLS,
// and can cut them: a broker outage for one backbone without touching the
// broker other tests share.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	up    bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	// answer, when set, may play the broker itself: it gets each connection
	// and its number (1, 2, …) and reports whether it handled it.
	answer func(c net.Conn, n int) bool
	n      int
}

// newProxy listens on a free loopback port; with tlsConf it speaks TLS to
// its clients. It starts up.
func newProxy(t *testing.T, tlsConf *tls.Config) *proxy {
	t.Helper()
	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5672")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	p := &proxy{ln: ln, target: target, up: true, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// connections returns how many connections the proxy accepted.
func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if !p.up {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

// answerWith makes f answer the connections it wants (see proxy.answer).
func (p *proxy) answerWith(f func(c net.Conn, n int) bool) {
	p.mu.Lock()
	p.answer = f
	p.mu.Unlock()
}

func (p *proxy) serve(c net.Conn) {
	defer p.wg.Done()
	defer p.drop(c)
	p.mu.Lock()
	p.n++
	answer, n := p.answer, p.n
	p.mu.Unlock()
	if answer != nil && answer(c, n) {
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	if !p.up {
		p.mu.Unlock()
		s.Close()
		return
	}
	p.conns[s] = struct{}{}
	p.mu.Unlock()
	defer p.drop(s)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
	<-done
}

func (p *proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// cut closes every connection and refuses new ones until resume.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = false
	for c := range p.conns {
		c.Close()
	}
}

func (p *proxy) resume() {
	p.mu.Lock()
	p.up = true
	p.mu.Unlock()
}
