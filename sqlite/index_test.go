package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

var base = time.Date(2025, 11, 25, 12, 0, 0, 0, time.UTC)

func openTest(t *testing.T) (*Index, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "index.db")
	return openPath(t, path), path
}

// openPath opens the index file at path, migrating it, until the test ends.
func openPath(t *testing.T, path string) *Index {
	t.Helper()
	x, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := x.Close(); err != nil {
			t.Error(err)
		}
	})
	return x
}

// report builds a report captured i seconds after base. Its ID comes from the
// capture time, as in production, so IDs sort with time.
func report(i int) *corepipe.Report {
	at := base.Add(time.Duration(i) * time.Second)
	return &corepipe.Report{
		Schema:     corepipe.ReportSchema,
		ID:         corepipe.NewID(at),
		Status:     corepipe.StatusAnalyzed,
		CapturedAt: at,
		Node:       "node-a",
		Process:    corepipe.Process{PID: 100 + i, Exe: "/usr/bin/server", Comm: "server"},
		Container:  &corepipe.Container{Namespace: "prod", Pod: "server-0"},
		Signature:  "gocrash/v1:aaaa",
		Title:      fmt.Sprintf("crash %d", i),
		Goroutines: []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{{Function: "main.main"}}}},
		Threads:    []corepipe.Thread{{ID: 1}},
	}
}

func upsert(t *testing.T, x *Index, rs ...*corepipe.Report) {
	t.Helper()
	for _, r := range rs {
		if err := x.Upsert(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

// rebuild rebuilds x from rs, in order.
func rebuild(t *testing.T, x *Index, rs ...*corepipe.Report) {
	t.Helper()
	err := x.Rebuild(context.Background(), func(put func(*corepipe.Report) error) error {
		for _, r := range rs {
			if err := put(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func list(t *testing.T, x *Index, f corepipe.CrashFilter) ([]string, string) {
	t.Helper()
	rs, next, err := x.Crashes(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return ids, next
}

func TestOrderNewestFirst(t *testing.T) {
	x, _ := openTest(t)
	a, b, c := report(1), report(2), report(3)
	// Same capture time: the ID breaks the tie, so the order is total.
	d := report(3)
	d.ID = corepipe.NewID(d.CapturedAt)
	upsert(t, x, b, d, a, c)

	got, next := list(t, x, corepipe.CrashFilter{})
	hi, lo := c.ID, d.ID
	if hi < lo {
		hi, lo = lo, hi
	}
	want := []string{hi, lo, b.ID, a.ID}
	if !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
	if next != "" {
		t.Errorf("next cursor = %q after the last page", next)
	}
}

func TestUpsertIsIdempotentAndLastWins(t *testing.T) {
	x, _ := openTest(t)
	r := report(1)
	r.Status = corepipe.StatusPending
	upsert(t, x, r, r)

	analyzed := *r
	analyzed.Status = corepipe.StatusAnalyzed
	analyzed.Title = "nil pointer dereference in main.handle"
	upsert(t, x, &analyzed)

	got, _ := list(t, x, corepipe.CrashFilter{})
	if len(got) != 1 {
		t.Fatalf("rows = %d, want 1", len(got))
	}
	s, err := x.Crash(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != corepipe.StatusAnalyzed || s.Title != analyzed.Title {
		t.Errorf("got status %q title %q, want the second upsert's", s.Status, s.Title)
	}
	if s.Goroutines != nil || s.Threads != nil {
		t.Error("index returned goroutines or threads: it must store summaries only")
	}
	if !s.CapturedAt.Equal(r.CapturedAt) || s.Process.PID != r.Process.PID {
		t.Errorf("summary lost fields: %+v", s)
	}
	if n, _ := list(t, x, corepipe.CrashFilter{Status: corepipe.StatusPending}); len(n) != 0 {
		t.Errorf("status column not updated: pending filter returned %v", n)
	}
}

func TestUpsertRejectsBadID(t *testing.T) {
	x, _ := openTest(t)
	r := report(1)
	r.ID = "../../etc/passwd"
	if err := x.Upsert(context.Background(), r); !errors.Is(err, corepipe.ErrInvalid) {
		t.Errorf("err = %v, want ErrInvalid", err)
	}
}

func TestCrashNotFound(t *testing.T) {
	x, _ := openTest(t)
	_, err := x.Crash(context.Background(), corepipe.NewID(base))
	if !errors.Is(err, corepipe.ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
}

func TestFilters(t *testing.T) {
	x, _ := openTest(t)
	var rs []*corepipe.Report
	for i := range 6 {
		rs = append(rs, report(i))
	}
	rs[1].Node = "node-b"
	rs[2].Container = &corepipe.Container{Namespace: "staging", Pod: "server-0"}
	rs[3].Container.Pod = "server-1"
	rs[4].Signature = "gocrash/v1:bbbb"
	rs[4].Process.Exe = "/opt/other/worker"
	rs[5].Status = corepipe.StatusFailed
	rs[5].Container = nil
	rs[5].Process.Exe = ""
	rs[5].Artifacts.Executable.Path = "/srv/cron"
	rs[2].Artifacts.Executable.BuildID = "4c1d2f"
	rs[3].Artifacts.Executable.GoBuildID = "abc/def/ghi/jkl"
	upsert(t, x, rs...)

	ids := func(is ...int) []string {
		var out []string
		for _, i := range slices.Backward(is) {
			out = append(out, rs[i].ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    corepipe.CrashFilter
		want []string
	}{
		{"node", corepipe.CrashFilter{Node: "node-b"}, ids(1)},
		{"namespace", corepipe.CrashFilter{Namespace: "staging"}, ids(2)},
		{"pod", corepipe.CrashFilter{Pod: "server-1"}, ids(3)},
		{"signature", corepipe.CrashFilter{Signature: "gocrash/v1:bbbb"}, ids(4)},
		{"status", corepipe.CrashFilter{Status: corepipe.StatusFailed}, ids(5)},
		{"exe path", corepipe.CrashFilter{Exe: "/opt/other/worker"}, ids(4)},
		{"exe base name", corepipe.CrashFilter{Exe: "worker"}, ids(4)},
		{"exe from artifact", corepipe.CrashFilter{Exe: "cron"}, ids(5)},
		{"exe partial is not a match", corepipe.CrashFilter{Exe: "work"}, nil},
		{"since inclusive", corepipe.CrashFilter{Since: rs[4].CapturedAt}, ids(4, 5)},
		{"combined", corepipe.CrashFilter{Node: "node-a", Namespace: "prod", Exe: "server"}, ids(0, 3)},
		{"no match", corepipe.CrashFilter{Node: "nowhere"}, nil},
		{"gnu build id", corepipe.CrashFilter{BuildID: "4c1d2f"}, ids(2)},
		{"go build id", corepipe.CrashFilter{BuildID: "abc/def/ghi/jkl"}, ids(3)},
		{"build id with another filter", corepipe.CrashFilter{BuildID: "4c1d2f", Namespace: "prod"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := list(t, x, tc.f)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	x, _ := openTest(t)
	for i := range MaxLimit + 10 {
		upsert(t, x, report(i))
	}
	for _, tc := range []struct{ limit, want int }{
		{0, DefaultLimit},
		{7, 7},
		{MaxLimit + 1, MaxLimit},
	} {
		got, next := list(t, x, corepipe.CrashFilter{Limit: tc.limit})
		if len(got) != tc.want || next == "" {
			t.Errorf("limit %d: %d rows, next %q; want %d rows and a cursor", tc.limit, len(got), next, tc.want)
		}
	}
	if _, _, err := x.Crashes(context.Background(), corepipe.CrashFilter{Limit: -1}); !errors.Is(err, corepipe.ErrInvalid) {
		t.Errorf("limit -1: err = %v, want ErrInvalid", err)
	}
}

// TestPagingUnderInserts pages through 250 reports while new ones, both newer
// and interleaved in time with the ones already listed, keep arriving: every
// report that was there before the first page must be seen exactly once.
func TestPagingUnderInserts(t *testing.T) {
	x, _ := openTest(t)
	before := map[string]bool{}
	for i := range 250 {
		r := report(i * 10)
		upsert(t, x, r)
		before[r.ID] = true
	}

	seen := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		ids, next := list(t, x, corepipe.CrashFilter{Limit: 100, Cursor: cursor})
		pages++
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("page %d: %s listed twice", pages, id)
			}
			seen[id] = true
		}
		if next == "" {
			break
		}
		cursor = next
		// A newer crash, one inside the pages still to come and one in the
		// pages already read.
		upsert(t, x, report(10000+pages), report(1000-pages*10+5), report(2495-pages))
	}
	if pages != 3 {
		t.Errorf("pages = %d, want 3", pages)
	}
	for id := range before {
		if !seen[id] {
			t.Errorf("%s was never listed", id)
		}
	}
}

// TestConcurrentWriters upserts from several goroutines and through a second
// Open of the same file, as the api and a rebuild would: WAL and the busy
// timeout must absorb the contention.
func TestConcurrentWriters(t *testing.T) {
	x, path := openTest(t)
	y, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			db := []*Index{x, y}[w%2]
			for i := range 50 {
				if err := db.Upsert(context.Background(), report(w*1000+i)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got, _ := list(t, x, corepipe.CrashFilter{Limit: MaxLimit})
	if len(got) != 200 {
		t.Errorf("rows = %d, want 200", len(got))
	}
}

func TestBadCursor(t *testing.T) {
	x, _ := openTest(t)
	for _, c := range []string{
		"!!!",
		"bm90IGEgY3Vyc29y", // "not a cursor"
		cursorKey{at: 1, key: "short"}.encode(crashCursor),
		cursorKey{at: 1, key: corepipe.NewID(base)}.encode(groupCursor),
		(cursorKey{at: 1, key: corepipe.NewID(base)}.encode(crashCursor))[2:],
	} {
		_, _, err := x.Crashes(context.Background(), corepipe.CrashFilter{Cursor: c})
		if !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("cursor %q: err = %v, want ErrInvalid", c, err)
		}
	}
}

func TestReopenKeepsRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	x, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := report(1)
	upsert(t, x, r)
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}

	x, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	s, err := x.Crash(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Title != r.Title {
		t.Errorf("title = %q, want %q", s.Title, r.Title)
	}
	var mode string
	if err := x.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestOpenRejectsQueryInPath(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "index.db?mode=memory"))
	if !errors.Is(err, corepipe.ErrInvalid) {
		t.Errorf("err = %v, want ErrInvalid", err)
	}
}
