package natstest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a JetStream cluster of nats-server processes on loopback
// ports, each with its own store, routed to every other.
type Cluster struct {
	tb    testing.TB
	Nodes []*Process
	names []string
}

// StartCluster starts n routed nats-server processes with JetStream and
// returns once the cluster has elected its meta leader, so streams of up to
// n replicas can be created. It stops them when the test ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natstest: a cluster of %d servers", n)
	}
	c := &Cluster{tb: tb}
	routePorts := make([]int, n)
	for i := range routePorts {
		routePorts[i] = FreePort(tb)
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		conf := fmt.Sprintf("server_name: %s\ncluster {\n  name: corepipe-test\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
			name, routePorts[i], strings.Join(routes, ", "))
		p := newProcess(tb, conf)
		c.Nodes = append(c.Nodes, p)
		c.names = append(c.names, name)
	}
	for _, p := range c.Nodes {
		p.start()
		tb.Cleanup(p.Stop)
	}
	if err := c.WaitReady(60 * time.Second); err != nil {
		tb.Fatalf("natstest: cluster: %v\n%s", err, c.Nodes[0].logTail())
	}
	return c
}

// URL lists every server's client URL, the form nats clients take to fail
// over between them.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.Nodes))
	for i, p := range c.Nodes {
		urls[i] = p.URL()
	}
	return strings.Join(urls, ",")
}

// WaitReady returns once JetStream answers through the cluster: a meta
// leader is elected.
func (c *Cluster) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = c.jetStream(func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.AccountInfo(ctx)
			return err
		}); last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("JetStream not ready after %s: %v", timeout, last)
}

// StreamLeader is the server that leads stream now, nil when the stream
// has no leader (an election under way).
func (c *Cluster) StreamLeader(stream string) (*Process, error) {
	var leader string
	err := c.jetStream(func(ctx context.Context, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster != nil {
			leader = info.Cluster.Leader
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("natstest: leader of %s: %w", stream, err)
	}
	for i, name := range c.names {
		if name == leader {
			return c.Nodes[i], nil
		}
	}
	return nil, nil
}

func (c *Cluster) jetStream(f func(context.Context, jetstream.JetStream) error) error {
	nc, err := nats.Connect(c.URL(), nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = f(ctx, js)
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("JetStream did not answer within 5s")
	}
	return err
}

// newProcess is a server not yet started, with conf as its configuration
// file and its own store and port.
func newProcess(tb testing.TB, conf string) *Process {
	tb.Helper()
	p := &Process{
		tb:       tb,
		bin:      serverBinary(tb),
		storeDir: tb.TempDir(),
		port:     FreePort(tb),
	}
	p.logPath = filepath.Join(p.storeDir, "nats-server.log")
	if conf != "" {
		p.confPath = filepath.Join(tb.TempDir(), "nats-server.conf")
		if err := writeFile(p.confPath, conf); err != nil {
			tb.Fatalf("natstest: %v", err)
		}
	}
	return p
}
