// Package natstest starts NATS servers for tests: the embedded server of
// queue/nats for most of them, and a real nats-server process for the fault
// tests that stop and restart NATS under a running pipeline.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natsq "github.com/corepipe/corepipe/queue/nats"
)

// StartEmbedded starts an in-process JetStream server on a random port with
// its store in a temporary directory, shut down when the test ends.
func StartEmbedded(tb testing.TB) *natsq.Embedded {
	tb.Helper()
	e, err := natsq.StartEmbedded(natsq.EmbeddedOptions{StoreDir: tb.TempDir(), Port: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Shutdown)
	return e
}

// JetStream is a plain JetStream client of url, closed when the test ends:
// a look at the streams the way an operator with the nats CLI has it, apart
// from the queue adapter under test.
func JetStream(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}
