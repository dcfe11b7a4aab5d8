package retention_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/index"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	natsq "github.com/corepipe/corepipe/queue/nats"
	"github.com/corepipe/corepipe/retention"
)

// Two API replicas over one index and one blob store, each with its own
// NATS connection: only the lease's holder sweeps, and when it dies the
// other takes over.
func TestOneSweeperPerCluster(t *testing.T) {
	s, _, _ := scene(t)
	e := natstest.StartEmbedded(t)
	now := func() time.Time { return base.Add(40 * day) }
	sweeper := func(name string) (*retention.Sweeper, *natsq.Queue) {
		q, err := natsq.Open(context.Background(), e.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close(context.Background()) })
		lease, err := q.Lease("retention", name, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		sw, err := retention.New(retention.Config{Blobs: s.Blobs, Index: s.Index, Cores: 30 * day, Keep: 2, Batch: 1,
			Lease: lease, Publish: q, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return sw, q
	}
	a, qa := sweeper("api-a")
	b, _ := sweeper("api-b")
	sweep := func(sw *retention.Sweeper) retention.Stats {
		t.Helper()
		st, err := sw.Sweep(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := sweep(a); !st.Swept || st.Cores != 1 {
		t.Fatalf("a's sweep = %+v, want one core swept", st)
	}
	for range 2 {
		if st := sweep(b); st.Swept {
			t.Fatalf("b swept while a holds the lease: %+v", st)
		}
		if st := sweep(a); !st.Swept || st.Cores != 1 {
			t.Fatalf("a's sweep = %+v, want one core swept", st)
		}
	}
	// a dies: its connection goes and nothing renews its lease.
	qa.Close(context.Background())
	var st retention.Stats
	testkit.WaitFor(t, "b to take the lease of a dead a", func() bool { st = sweep(b); return st.Swept })
	if st.Cores != 1 {
		t.Fatalf("b's first sweep = %+v, want the last core", st)
	}
	if st := sweep(b); !st.Swept || st.Cores != 0 {
		t.Fatalf("b's second sweep = %+v, want nothing left", st)
	}

	// Another replica's index follows the reports stream: it hears of each
	// expired core once.
	q, err := natsq.Open(context.Background(), e.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	cons, err := q.Reports(t.Context(), "replica-c")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < 4 {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		msg, err := cons.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d announcements: %v", len(seen), err)
		}
		var r corepipe.Report
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			t.Fatal(err)
		}
		if l := r.Artifacts.Core.Where(now()); l.State != corepipe.CoreExpired || r.Artifacts.Core.Key != "" || seen[r.ID] {
			t.Errorf("announced %s: core %s, key %q, seen before %v", r.ID, l.State, r.Artifacts.Core.Key, seen[r.ID])
		}
		seen[r.ID] = true
		msg.Ack(t.Context())
	}
}

// Another replica's index, which follows the reports stream, ends where the
// sweeping replica's does: expired cores and deleted reports alike.
func TestOtherReplicaFollowsTheSweep(t *testing.T) {
	s, _, _ := scene(t)
	e := natstest.StartEmbedded(t)
	q, err := natsq.Open(context.Background(), e.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	other := rebuilt(t, s.Blobs)
	sw, err := retention.New(retention.Config{Blobs: s.Blobs, Index: s.Index, Cores: 30 * day, Reports: 38 * day, Keep: 2,
		Publish: q, Now: func() time.Time { return base.Add(40 * day) }})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := sw.Pass(t.Context()); err != nil || st.Cores != 2 || st.Reports != 3 {
		t.Fatalf("pass = %+v, %v; want 2 cores and 3 reports", st, err)
	}
	cons, err := q.Reports(t.Context(), "other")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	f := &index.Follower{Consumer: cons, Index: other}
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	want := describe(t, s.Index)
	testkit.WaitFor(t, "the other replica's index to follow the sweep", func() bool {
		return slices.Equal(describe(t, other), want)
	})
}
