package nats_test

import (
	"context"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
)

// TestPending counts what a reports consumer has not acknowledged: messages
// not yet delivered and messages delivered but not acked.
func TestPending(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	q := open(t, srv.ClientURL())
	ctx := context.Background()
	for i := range 3 {
		r := corepipe.NewReport(newCrash("n"))
		r.ID = corepipe.NewID(time.Now().Add(time.Duration(i) * time.Millisecond))
		if err := q.PublishReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	c, err := q.Reports(ctx, "index")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := c.(interface {
		Pending(context.Context) (uint64, error)
	})
	if !ok {
		t.Fatal("the reports consumer has no Pending method")
	}
	pending := func() uint64 {
		t.Helper()
		n, err := p.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := pending(); n != 3 {
		t.Errorf("pending before reading = %d, want 3", n)
	}
	m := next(t, c, 5*time.Second)
	if n := pending(); n != 3 {
		t.Errorf("pending with one delivered, not acked = %d, want 3", n)
	}
	ack(t, m)
	if n := pending(); n != 2 {
		t.Errorf("pending after one ack = %d, want 2", n)
	}
}
