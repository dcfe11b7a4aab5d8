package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// Agents on separate connections racing on one key admit exactly N cores.
func TestCoreQuotaRace(t *testing.T) {
	e := natstest.StartEmbedded(t)
	ctx := context.Background()
	const agents, tries, n = 6, 5, 3
	var admitted atomic.Int32
	var wg sync.WaitGroup
	for range agents {
		q := open(t, e.ClientURL())
		quota, err := q.CoreQuota(n, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tries {
				ok, err := quota.Admit(ctx, "buildid:abc/sig:11")
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := admitted.Load(); got != n {
		t.Fatalf("admitted %d cores, want %d", got, n)
	}
}

// A request waits in the stream for its node's agent and reaches only it.
func TestCoreRequestReachesItsNode(t *testing.T) {
	e := natstest.StartEmbedded(t)
	api, agent := open(t, e.ClientURL()), open(t, e.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const id = "01J0000000000000000000000A"
	if err := api.RequestCore(ctx, "other-node", "01J0000000000000000000000B"); err != nil {
		t.Fatal(err)
	}
	if err := api.RequestCore(ctx, "node.a", id); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := agent.CoreRequests(ctx, "node.a", func(_ context.Context, r natsq.CoreRequest) {
		got = append(got, r.ID)
		if err := r.Ack(); err != nil {
			t.Error(err)
		}
		cancel()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != id {
		t.Fatalf("node.a got requests %v, want [%s]", got, id)
	}
}

// A crash analysed once is queued again under a new reason (a re-analysis),
// which the first publish's ID does not stop; a retry of the same
// republish is dropped.
func TestRepublishCrash(t *testing.T) {
	e := natstest.StartEmbedded(t)
	q := open(t, e.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := newCrash("node.a")
	publishCrash(t, q, c)
	cons := crashes(t, q, "analyzer")
	ack(t, next(t, cons, 5*time.Second))

	c.Revision = 1
	for range 2 {
		if err := q.RepublishCrash(ctx, c, "r1-"+c.ID); err != nil {
			t.Fatal(err)
		}
	}
	m := next(t, cons, 5*time.Second)
	var got corepipe.Crash
	if err := json.Unmarshal(m.Data(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != c.ID || got.Revision != 1 {
		t.Errorf("republished crash %s revision %d, want %s revision 1", got.ID, got.Revision, c.ID)
	}
	ack(t, m)
	expectNone(t, cons, 300*time.Millisecond)

	for _, why := range []string{"", "a.b", "two words"} {
		if err := q.RepublishCrash(ctx, c, why); !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("RepublishCrash(why %q): %v, want ErrInvalid", why, err)
		}
	}
}
