package notify_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/notify"
	"github.com/corepipe/corepipe/sqlite"
)

func openTestState(tb testing.TB) *notify.State {
	tb.Helper()
	store, err := sqlite.OpenNotifyStore(filepath.Join(tb.TempDir(), "state.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	return notify.NewState(store)
}

func testReport(at time.Time, signature string) *corepipe.Report {
	return &corepipe.Report{ID: corepipe.NewID(at), Status: corepipe.StatusAnalyzed, Signature: signature,
		Title: "boom in " + signature, CapturedAt: at, Node: "n1"}
}

// drain takes every message out of the outbox, oldest first.
func drain(t *testing.T, st *notify.State) []notify.Message {
	t.Helper()
	var out []notify.Message
	for {
		q, err := st.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if q == nil {
			return out
		}
		out = append(out, q.Msg())
		if err := st.Finish(context.Background(), q, ""); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDigestListsTheBiggestGroups(t *testing.T) {
	ctx := context.Background()
	st := openTestState(t)
	p := notify.Policy{SpikeCount: -1}.WithDefaults()
	t0 := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	if _, err := st.Digest(ctx, p, t0, false); err != nil {
		t.Fatal(err)
	}
	// Group i crashes i+2 times: one alert, i+1 summarised.
	for i := range notify.DigestGroups + 3 {
		sig := fmt.Sprintf("gocrash/v1:%02d", i)
		for j := range i + 2 {
			if err := st.Handle(ctx, p, testReport(t0.Add(time.Duration(j)*time.Second), sig), t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	failed := testReport(t0, "")
	failed.Status = corepipe.StatusFailed
	if err := st.Handle(ctx, p, failed, t0); err != nil {
		t.Fatal(err)
	}
	if alerts := drain(t, st); len(alerts) != notify.DigestGroups+3 {
		t.Fatalf("%d alerts, want one per group", len(alerts))
	}
	if queued, err := st.Digest(ctx, p, t0.Add(p.DigestInterval-time.Second), false); err != nil || queued {
		t.Fatalf("digest before its interval: %v, %v", queued, err)
	}
	if queued, err := st.Digest(ctx, p, t0.Add(p.DigestInterval), false); err != nil || !queued {
		t.Fatalf("digest: %v, %v", queued, err)
	}
	msgs := drain(t, st)
	if len(msgs) != 1 || msgs[0].Kind != notify.KindDigest {
		t.Fatalf("messages %+v, want one digest", msgs)
	}
	d := msgs[0].Digest
	if len(d.Groups) != notify.DigestGroups || d.Groups[0].Signature != "gocrash/v1:12" || d.Groups[0].Count != 13 || d.Groups[0].Total != 14 {
		t.Errorf("digest starts with %+v, want the biggest group", d.Groups[0])
	}
	// The three smallest groups had 1, 2 and 3 crashes summarised.
	if d.MoreGroups != 3 || d.MoreCrashes != 6 || d.Unanalysed != 1 {
		t.Errorf("more groups %d, more crashes %d, unanalysed %d; want 3, 6, 1", d.MoreGroups, d.MoreCrashes, d.Unanalysed)
	}
	if queued, err := st.Digest(ctx, p, t0.Add(2*p.DigestInterval), false); err != nil || queued {
		t.Errorf("a digest with nothing new: %v, %v", queued, err)
	}
}

// BenchmarkHandle measures one report's decision, durably committed: the
// notifier's throughput when it catches up with a backlog.
func BenchmarkHandle(b *testing.B) {
	ctx := context.Background()
	st := openTestState(b)
	p := notify.DefaultPolicy
	t0 := time.Now()
	b.ResetTimer()
	for i := range b.N {
		r := testReport(t0.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("gocrash/v1:%d", i%50))
		if err := st.Handle(ctx, p, r, t0); err != nil {
			b.Fatal(err)
		}
	}
}
