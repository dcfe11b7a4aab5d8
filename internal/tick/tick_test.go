package tick

import (
	"context"
	"testing"
	"time"

	"github.com/corepipe/corepipe/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, time.Millisecond, func() {
			calls++
			if calls == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(testkit.WaitDeadline):
		t.Fatal("Every did not return once its context ended")
	}
	if calls != 3 {
		t.Errorf("%d calls, want 3: none after the context ended", calls)
	}
}

func TestEveryEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Every(ctx, time.Nanosecond, func() { t.Error("fn called after its context ended") })
}
