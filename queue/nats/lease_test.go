package nats_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
)

// One holder at a time: the other process gets the lease when the holder
// releases it, or when it stops renewing and the ttl passes.
func TestLeaseOneHolder(t *testing.T) {
	e := natstest.StartEmbedded(t)
	ctx := context.Background()
	a, err := open(t, e.ClientURL()).Lease("sweeper", "api-a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := open(t, e.ClientURL()).Lease("sweeper", "api-b", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hold := func(l interface {
		Hold(context.Context) (bool, error)
	}) bool {
		t.Helper()
		ok, err := l.Hold(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !hold(a) || hold(b) || !hold(a) || hold(b) {
		t.Fatal("want a to take and renew the lease and b to be refused")
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !hold(b) || hold(a) {
		t.Fatal("after a released it, want b to take the lease and a refused")
	}
	// b stops renewing, as a replica that died: the lease lapses and a
	// takes it; b, back too late, learns it lost it.
	testkit.WaitFor(t, "the lease of a holder that stopped renewing to lapse", func() bool { return hold(a) })
	if hold(b) {
		t.Fatal("b still holds a lease a took after it lapsed")
	}
	if !hold(a) {
		t.Fatal("a lost the lease it renews")
	}
}

func TestLeaseRejects(t *testing.T) {
	q := open(t, natstest.StartEmbedded(t).ClientURL())
	for _, c := range []struct {
		name, holder string
		ttl          time.Duration
	}{{"", "a", time.Minute}, {"a.b", "a", time.Minute}, {"x", "", time.Minute}, {"x", "a", time.Millisecond}} {
		if _, err := q.Lease(c.name, c.holder, c.ttl); !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("Lease(%q, %q, %v) = %v, want ErrInvalid", c.name, c.holder, c.ttl, err)
		}
	}
}
