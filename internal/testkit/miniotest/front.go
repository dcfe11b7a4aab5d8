package miniotest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Front is a TCP load balancer on a loopback port in front of an erasure
// set, as a deployment puts one before its MinIO servers: each connection
// goes to the next member that accepts it, so clients keep working while
// one member is down.
type Front struct {
	l       net.Listener
	members []*Server
	next    atomic.Uint64
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewFront starts a balancer before set and closes it when the test ends.
func NewFront(t testing.TB, set []*Server) *Front {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("miniotest: front: %v", err)
	}
	f := &Front{l: l, members: set, conns: map[net.Conn]struct{}{}}
	f.wg.Go(f.serve)
	t.Cleanup(f.close)
	return f
}

// Endpoint is the balancer's host:port.
func (f *Front) Endpoint() string { return f.l.Addr().String() }

// URL is the blob URL of bucket through the balancer.
func (f *Front) URL(bucket string) string {
	q := url.Values{"endpoint": {f.Endpoint()}, "insecure": {"1"}}
	return (&url.URL{Scheme: "s3", Host: bucket, RawQuery: q.Encode()}).String()
}

func (f *Front) serve() {
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Go(func() { f.proxy(c) })
	}
}

func (f *Front) proxy(c net.Conn) {
	defer f.untrack(c)
	start := f.next.Add(1)
	var up net.Conn
	for i := range len(f.members) {
		m := f.members[(int(start)+i)%len(f.members)]
		var err error
		if up, err = net.DialTimeout("tcp", m.addr, time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	if !f.track(up) {
		up.Close()
		return
	}
	defer f.untrack(up)
	done := make(chan struct{})
	go func() {
		io.Copy(up, c)
		up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, up)
	c.(*net.TCPConn).CloseWrite()
	<-done
}

// track records an open connection so close can end it; false once closed.
func (f *Front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Front) untrack(c net.Conn) {
	c.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

func (f *Front) close() {
	f.l.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.wg.Wait()
}
