// Package pipetest is the pipeline's middle for tests: an embedded JetStream
// server with a queue open on it, and a filesystem blob store, the parts
// the agent, the analyzer and the index follower share.
package pipetest

import (
	"context"
	"testing"

	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// Pipe is a queue and a blob store that live until the test ends.
type Pipe struct {
	Server *natsq.Embedded
	Queue  *natsq.Queue
	Blobs  *fs.Store
}

// Start starts the server, opens the queue and the blob store.
func Start(tb testing.TB) *Pipe {
	tb.Helper()
	srv := natstest.StartEmbedded(tb)
	q, err := natsq.Open(context.Background(), srv.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { q.Close(context.Background()) })
	blobs, err := fs.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return &Pipe{Server: srv, Queue: q, Blobs: blobs}
}
