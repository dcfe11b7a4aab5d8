package nats_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corepipe/corepipe/internal/testkit/natstest"
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
