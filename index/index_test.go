package index_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/index"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/pipetest"
	natsq "github.com/corepipe/corepipe/queue/nats"
	"github.com/corepipe/corepipe/sqlite"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

var base = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// stored makes crash i, captured i hours after base, puts its full report
// in the blob store as the analyzer does and announces it on the stream.
func stored(t *testing.T, blobs corepipe.BlobStore, q *natsq.Queue, i int, sig, version string) *corepipe.Report {
	t.Helper()
	at := base.Add(time.Duration(i) * time.Hour)
	r := &corepipe.Report{
		Schema: corepipe.ReportSchema, ID: corepipe.NewID(at), Status: corepipe.StatusAnalyzed, CapturedAt: at,
		Node: fmt.Sprintf("node-%d", i%2), Process: corepipe.Process{PID: 100 + i, Exe: "/usr/bin/server"},
		Container: &corepipe.Container{Namespace: "prod", Pod: fmt.Sprintf("server-%d", i%3)},
		Go:        &corepipe.GoInfo{MainVersion: version},
		Signature: sig, Title: "crash in " + sig,
		CrashingGoroutine: 1,
		Goroutines:        []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{{Function: "main.handle", File: "/src/main.go", Line: 7}}}},
	}
	put(t, blobs, r)
	if err := q.PublishReport(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

func put(t testing.TB, blobs corepipe.BlobStore, r *corepipe.Report) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := blobs.Put(context.Background(), corepipe.ReportKey(r.ID), bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func openIndex(t testing.TB, path string) *sqlite.Index {
	t.Helper()
	x, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// follow runs a follower on a fresh consumer of durable until it is ready
// and returns the function that stops it.
func follow(t *testing.T, q *natsq.Queue, x corepipe.Index, durable string) (*index.Follower, func()) {
	t.Helper()
	cons, err := q.Reports(context.Background(), durable)
	if err != nil {
		t.Fatal(err)
	}
	f := &index.Follower{Consumer: cons, Index: x}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !f.Ready() {
		if time.Now().After(deadline) {
			stop()
			t.Fatal("follower never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f, stop
}

type snapshot struct {
	crashes []*corepipe.Report
	groups  []*corepipe.Group
}

func snap(t *testing.T, x *sqlite.Index) snapshot {
	t.Helper()
	crashes, _, err := x.Crashes(context.Background(), corepipe.CrashFilter{Limit: sqlite.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	groups, _, err := x.Groups(context.Background(), corepipe.GroupFilter{Limit: sqlite.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{crashes, groups}
}

func counts(s snapshot) map[string]int64 {
	out := map[string]int64{}
	for _, g := range s.groups {
		out[g.Signature] = g.Count
	}
	return out
}

// TestFollowRestartRebuild feeds an index from the stream, restarts the
// follower on the same file, and rebuilds a second index from the blob
// store alone: no report is counted twice, and both indexes agree.
func TestFollowRestartRebuild(t *testing.T) {
	p := pipetest.Start(t)
	q, blobs := p.Queue, p.Blobs
	dir := t.TempDir()
	sigs := []string{"gocrash/v1:aa", "gocrash/v1:bb"}
	for i := range 20 {
		stored(t, blobs, q, i, sigs[i%2], "v1")
	}

	dbPath := filepath.Join(dir, "index.db")
	live := openIndex(t, dbPath)
	f, stop := follow(t, q, live, "api")
	// Ready means caught up: everything published before is indexed.
	if n, _, err := live.Size(context.Background()); err != nil || n != 20 {
		t.Errorf("ready with %d of 20 reports indexed (%v)", n, err)
	}
	if n, err := f.Pending(context.Background()); err != nil || n != 0 {
		t.Errorf("pending = %d, %v once caught up", n, err)
	}
	stop()

	// While the api is down: more crashes, one of them a new version after
	// a quiet period, and a re-analysis that moves a crash to a new group.
	stored(t, blobs, q, 100, sigs[0], "v2")
	moved := stored(t, blobs, q, 20, sigs[1], "v1")
	moved.Signature = "gocrash/v1:cc"
	moved.Status = corepipe.StatusFailed // a new status, so the stream does not drop it as a duplicate
	put(t, blobs, moved)
	if err := q.PublishReport(context.Background(), moved); err != nil {
		t.Fatal(err)
	}

	live.Close()
	live = openIndex(t, dbPath)
	// A new consumer on the same durable resumes where the last one acked;
	// a second durable replays the whole stream into the same index.
	_, stop = follow(t, q, live, "api")
	stop()
	_, stop = follow(t, q, live, "replay")
	stop()
	got := snap(t, live)
	want := map[string]int64{sigs[0]: 11, sigs[1]: 10, "gocrash/v1:cc": 1}
	if c := counts(got); !reflect.DeepEqual(c, want) {
		t.Errorf("group counts %v, want %v", c, want)
	}
	if len(got.crashes) != 22 {
		t.Errorf("%d crashes indexed, want 22", len(got.crashes))
	}
	if got.groups[0].Signature != sigs[0] || got.groups[0].Status != corepipe.GroupRegressed || got.groups[0].LastVersion != "v2" {
		t.Errorf("most recent group %+v, want %s regressed in v2", got.groups[0], sigs[0])
	}

	rebuilt := openIndex(t, filepath.Join(dir, "rebuilt.db"))
	st, err := index.Rebuild(context.Background(), blobs, rebuilt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Indexed != 22 || st.Skipped != 0 {
		t.Errorf("rebuild stats %+v", st)
	}
	if r := snap(t, rebuilt); !reflect.DeepEqual(r, got) {
		t.Errorf("the rebuilt index differs from the followed one:\n rebuilt groups %+v\nfollowed groups %+v", r.groups, got.groups)
	}
}

func TestRebuildSkipsJunk(t *testing.T) {
	blobs, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := &corepipe.Report{Schema: 1, ID: corepipe.NewID(base), Status: corepipe.StatusAnalyzed, CapturedAt: base}
	put(t, blobs, good)
	other := corepipe.NewID(base.Add(time.Second))
	for key, body := range map[string]string{
		"reports/notes.txt": "hello",
		corepipe.ReportKey(corepipe.NewID(base.Add(-1))): "{not json",
		corepipe.ReportKey(other):                        `{"id":"` + good.ID + `"}`,
	} {
		if err := blobs.Put(ctx, key, bytes.NewReader([]byte(body)), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	x := openIndex(t, filepath.Join(t.TempDir(), "index.db"))
	st, err := index.Rebuild(ctx, blobs, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Indexed != 1 || st.Skipped != 3 {
		t.Errorf("stats %+v, want 1 indexed and 3 skipped", st)
	}
	if _, err := x.Crash(ctx, good.ID); err != nil {
		t.Error(err)
	}
}

// quietConsumer has no backlog count: the follower falls back to idleness.
type quietConsumer struct{}

func (quietConsumer) Next(ctx context.Context) (corepipe.Message, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestReadyWhenIdle(t *testing.T) {
	f := &index.Follower{Consumer: quietConsumer{}, Index: openIndex(t, filepath.Join(t.TempDir(), "x.db"))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	if f.Ready() {
		t.Error("ready before the idle period")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !f.Ready() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if !f.Ready() {
		t.Error("never ready on an idle stream")
	}
	if _, err := f.Pending(context.Background()); err == nil {
		t.Error("Pending without a counting consumer: no error")
	}
}

// flakyIndex fails every batch holding the report poison, and poison's
// first Upsert alone.
type flakyIndex struct {
	*sqlite.Index
	poison string

	mu          sync.Mutex
	batches     []int // sizes of the batches asked for
	poisonTries int
}

func (x *flakyIndex) UpsertBatch(ctx context.Context, rs []*corepipe.Report) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.batches = append(x.batches, len(rs))
	if slices.ContainsFunc(rs, func(r *corepipe.Report) bool { return r.ID == x.poison }) {
		return errors.New("disk full")
	}
	return x.Index.UpsertBatch(ctx, rs)
}

func (x *flakyIndex) Upsert(ctx context.Context, r *corepipe.Report) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if r.ID == x.poison {
		if x.poisonTries++; x.poisonTries == 1 {
			return errors.New("disk full")
		}
	}
	return x.Index.Upsert(ctx, r)
}

// TestFollowBatches: a backlog is indexed in batches; a batch that fails is
// indexed one report at a time, so that only the report that fails alone
// waits for its redelivery, and nothing is counted twice.
func TestFollowBatches(t *testing.T) {
	p := pipetest.Start(t)
	var poison string
	for i := range 120 {
		r := stored(t, p.Blobs, p.Queue, i, "gocrash/v1:aa", "v1")
		if i == 70 {
			poison = r.ID
		}
	}
	x := &flakyIndex{Index: openIndex(t, filepath.Join(t.TempDir(), "index.db")), poison: poison}
	f, stop := follow(t, p.Queue, x, "api")
	testkit.WaitFor(t, "120 reports indexed", func() bool { return f.Indexed() >= 120 })
	stop()
	if got := counts(snap(t, x.Index)); got["gocrash/v1:aa"] != 120 {
		t.Errorf("group counts %v, want 120 crashes of gocrash/v1:aa", got)
	}
	if _, err := x.Crash(context.Background(), poison); err != nil {
		t.Errorf("the report that failed once: %v", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if slices.Max(x.batches) < 2 {
		t.Errorf("batches of %v: the backlog was indexed one report at a time", x.batches)
	}
	if x.poisonTries != 2 {
		t.Errorf("the failing report was upserted alone %d times, want 2 (failed, then redelivered)", x.poisonTries)
	}
	if f.Indexed() != 120 {
		t.Errorf("indexed %d, want 120", f.Indexed())
	}
}

// BenchmarkRebuild times `corepipe api --rebuild`: every stored report read
// from a filesystem blob store, decoded, and indexed into a new index. Each
// report is an analysed crash of 30 goroutines of 10 frames. The store holds
// COREPIPE_BENCH_REBUILD reports (default 10 000), written once per run in
// $TMPDIR:
//
//	COREPIPE_BENCH_REBUILD=200000 TMPDIR=/var/tmp go test -run '^$' -bench Rebuild -benchtime 1x ./index
func BenchmarkRebuild(b *testing.B) {
	n := 10_000
	if v := os.Getenv("COREPIPE_BENCH_REBUILD"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("COREPIPE_BENCH_REBUILD=%q: want a number of reports", v)
		}
	}
	dir := b.TempDir()
	blobs, err := fs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-365 * 24 * time.Hour)
	for i := range n {
		at := start.Add(time.Duration(i) * time.Second)
		r := &corepipe.Report{
			Schema: corepipe.ReportSchema, ID: corepipe.NewID(at), Status: corepipe.StatusAnalyzed, CapturedAt: at,
			Node: fmt.Sprintf("node-%03d", i%300), Process: corepipe.Process{PID: 100 + i, Exe: fmt.Sprintf("/usr/bin/app%02d", i%20)},
			Container: &corepipe.Container{Namespace: fmt.Sprintf("ns-%d", i%10), Pod: fmt.Sprintf("pod-%03d", i%200)},
			Go:        &corepipe.GoInfo{MainVersion: fmt.Sprintf("v1.%d.0", i*10/n)},
			Signature: fmt.Sprintf("gocrash/v1:%016x", i*7919%500), Title: fmt.Sprintf("nil pointer dereference in main.handler%d", i*7919%500),
			CrashingGoroutine: 1,
		}
		for g := range 30 {
			gr := corepipe.Goroutine{ID: int64(g + 1), Status: "waiting"}
			for f := range 10 {
				gr.Frames = append(gr.Frames, corepipe.Frame{Function: fmt.Sprintf("main.worker%d.func%d", g, f), File: "/src/app/worker.go", Line: 10 + f})
			}
			r.Goroutines = append(r.Goroutines, gr)
		}
		put(b, blobs, r)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		x, err := sqlite.Open(filepath.Join(dir, fmt.Sprintf("index-%d.db", i)))
		if err != nil {
			b.Fatal(err)
		}
		began, cpu := time.Now(), testkit.CPUTime()
		st, err := index.Rebuild(ctx, blobs, x, nil)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(began)
		b.ReportMetric(float64(st.Indexed)/took.Seconds(), "reports/s")
		testkit.ReportCPUPer(b, cpu, st.Indexed, "report")
		x.Close()
	}
}

// BenchmarkFollow indexes a backlog of b.N reports from an embedded
// JetStream, as `corepipe api` catches up after a restart: batches from
// FetchReady, one transaction each, acks after the commit. The CPU per
// report counts the server's too, which runs in the process.
func BenchmarkFollow(b *testing.B) {
	p := pipetest.Start(b)
	ctx := context.Background()
	for i := range b.N {
		at := base.Add(time.Duration(i) * time.Second)
		r := &corepipe.Report{
			Schema: corepipe.ReportSchema, ID: corepipe.NewID(at), Status: corepipe.StatusAnalyzed, CapturedAt: at,
			Node: fmt.Sprintf("node-%02d", i%50), Container: &corepipe.Container{Namespace: "prod", Pod: fmt.Sprintf("pod-%03d", i%200)},
			Signature: fmt.Sprintf("gocrash/v1:%016x", i*7919%500), Title: "nil pointer dereference",
		}
		if err := p.Queue.PublishReport(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	cons, err := p.Queue.Reports(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	f := &index.Follower{Consumer: cons, Index: openIndex(b, filepath.Join(b.TempDir(), "index.db"))}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ResetTimer()
	began, cpu := time.Now(), testkit.CPUTime()
	go func() { done <- f.Run(ctx) }()
	for f.Indexed() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	took := time.Since(began)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "reports/s")
	testkit.ReportCPUPer(b, cpu, b.N, "report")
}
