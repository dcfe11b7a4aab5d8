package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/sqlite"
)

// The benchmarks share one index of benchCrashes crashes, built once per
// run in a temporary directory ($TMPDIR):
//
//	go test -run '^$' -bench . -benchtime 500x ./api
//	COREPIPE_BENCH_CRASHES=10000000 COREPIPE_BENCH_DIR=/var/tmp/bench-10m go test -run '^$' -bench . -benchtime 500x -timeout 3h ./api
var benchCrashes = benchSize()

// Every benchStoredEvery-th crash has its full report stored, for the
// detail benchmarks.
const benchStoredEvery = 100

// benchBuildBatch is how many reports the benchmark index is built from
// a transaction.
const benchBuildBatch = 10_000

// benchBatch is how many reports BenchmarkIngest/batch indexes in one
// transaction, as the follower does with a backlog (index.maxBatch).
const benchBatch = 1000

func benchSize() int {
	n := 100_000
	if v := os.Getenv("COREPIPE_BENCH_CRASHES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < benchStoredEvery {
			panic(fmt.Sprintf("COREPIPE_BENCH_CRASHES=%q: want a number of crashes, at least %d", v, benchStoredEvery))
		}
	}
	return n
}

var bench struct {
	once   sync.Once
	dir    string
	keep   bool // dir is the caller's
	err    error
	index  *sqlite.Index
	blobs  *fs.Store
	url    string
	close  func()
	stored []string // IDs with a stored report
	sigs   []string
	newest time.Time
}

// withBenchCleanup removes the benchmark index after every test and
// benchmark has run.
type withBenchCleanup struct{ m *testing.M }

func (w withBenchCleanup) Run() int {
	code := w.m.Run()
	if bench.close != nil {
		bench.close()
	}
	if bench.dir != "" && !bench.keep {
		os.RemoveAll(bench.dir)
	}
	return code
}

// benchReport is crash i of a fleet: 50 nodes, 10 namespaces, 200 pods, 20
// executables, 500 bugs, spread over 30 days; a few failed or pending.
func benchReport(rng *rand.Rand, i int, at time.Time) *corepipe.Report {
	r := newReport(0)
	r.ID = corepipe.NewID(at)
	r.CapturedAt = at
	r.Node = fmt.Sprintf("node-%02d", rng.IntN(50))
	r.Container = &corepipe.Container{Namespace: fmt.Sprintf("ns-%d", rng.IntN(10)), Pod: fmt.Sprintf("pod-%03d", rng.IntN(200)), Image: "registry/app:v1"}
	r.Process.Exe = fmt.Sprintf("/usr/local/bin/app%02d", rng.IntN(20))
	bug := rng.IntN(500)
	r.Signature = fmt.Sprintf("gocrash/v1:%016x", bug)
	r.Title = fmt.Sprintf("nil pointer dereference in main.handler%d", bug)
	r.Go.MainVersion = fmt.Sprintf("v1.%d.0", i*10/benchCrashes)
	switch n := rng.IntN(100); {
	case n < 4:
		r.Status, r.Error = corepipe.StatusFailed, "analysis timed out"
	case n < 5:
		r.Status = corepipe.StatusPending
	}
	if i%benchStoredEvery != 0 {
		return r.Summary()
	}
	// A realistic stack for the detail page: 200 goroutines of 20 frames.
	r.Goroutines = nil
	for g := range 200 {
		gr := corepipe.Goroutine{ID: int64(g + 1), Status: "waiting", WaitReason: "select"}
		for f := range 20 {
			gr.Frames = append(gr.Frames, corepipe.Frame{Function: fmt.Sprintf("main.worker%d.func%d", g%7, f), File: "/src/app/worker.go", Line: 10 + f})
		}
		r.Goroutines = append(r.Goroutines, gr)
	}
	r.CrashingGoroutine = 1
	return r
}

func benchEnv(b *testing.B) {
	bench.once.Do(func() { bench.err = openBench(context.Background()) })
	if bench.err != nil {
		b.Fatalf("build the benchmark index: %v", bench.err)
	}
}

// openBench opens the benchmark index in $COREPIPE_BENCH_DIR, kept for
// the next run (an index of ten million takes an hour to build here), or
// in a new temporary directory, and builds it unless it is already there.
func openBench(ctx context.Context) error {
	bench.dir, bench.keep = os.Getenv("COREPIPE_BENCH_DIR"), true
	if bench.dir == "" {
		var err error
		if bench.dir, err = os.MkdirTemp("", "corepipe-bench-"); err != nil {
			return err
		}
		bench.keep = false
	}
	var err error
	if bench.index, err = sqlite.Open(filepath.Join(bench.dir, "index.db")); err != nil {
		return err
	}
	if bench.blobs, err = fs.Open(filepath.Join(bench.dir, "blobs")); err != nil {
		return err
	}
	switch n, _, err := bench.index.Size(ctx); {
	case err != nil:
		return err
	case n == 0:
		if err := buildBench(ctx); err != nil {
			return err
		}
	case n < int64(benchCrashes):
		return fmt.Errorf("%s holds %d crashes, fewer than the %d asked for: remove it", bench.dir, n, benchCrashes)
	default:
		fmt.Fprintf(os.Stderr, "bench: %d crashes already indexed in %s\n", n, bench.dir)
		err := bench.blobs.List(ctx, corepipe.ReportsPrefix, func(key string) error {
			bench.stored = append(bench.stored, strings.TrimSuffix(strings.TrimPrefix(key, corepipe.ReportsPrefix), ".json"))
			return nil
		})
		if err != nil {
			return err
		}
		newest, _, err := bench.index.Crashes(ctx, corepipe.CrashFilter{Limit: 1})
		if err != nil || len(newest) == 0 {
			return fmt.Errorf("newest crash: %v", err)
		}
		bench.newest = newest[0].CapturedAt
	}
	groups, _, err := bench.index.Groups(ctx, corepipe.GroupFilter{Limit: 50})
	if err != nil {
		return err
	}
	for _, g := range groups {
		bench.sigs = append(bench.sigs, g.Signature)
	}
	srv, err := New(Config{Index: bench.index, Blobs: bench.blobs})
	if err != nil {
		return err
	}
	ts := httptest.NewServer(srv.Handler())
	bench.url = ts.URL
	bench.close = func() { ts.Close(); bench.index.Close() }
	return nil
}

// buildBench indexes benchCrashes crashes of the last 30 days and stores
// the full reports of every benchStoredEvery-th, and says how fast that was
// and how much disk it took.
func buildBench(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now().Add(-30 * 24 * time.Hour)
	step := 30 * 24 * time.Hour / time.Duration(benchCrashes)
	began := time.Now()
	// Batches of benchBuildBatch, as a follower catching up with the
	// stream indexes: one transaction of ten million would hold the whole
	// index twice on disk until its checkpoint.
	batch := make([]*corepipe.Report, 0, benchBuildBatch)
	for i := range benchCrashes {
		r := benchReport(rng, i, start.Add(time.Duration(i)*step))
		if i%benchStoredEvery == 0 {
			body, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := bench.blobs.Put(ctx, corepipe.ReportKey(r.ID), bytes.NewReader(body), int64(len(body))); err != nil {
				return err
			}
			bench.stored = append(bench.stored, r.ID)
		}
		bench.newest = r.CapturedAt
		if batch = append(batch, r); len(batch) == benchBuildBatch || i == benchCrashes-1 {
			if err := bench.index.UpsertBatch(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
		if (i+1)%1_000_000 == 0 {
			fmt.Fprintf(os.Stderr, "bench: %d crashes indexed in %v\n", i+1, time.Since(began).Round(time.Second))
		}
	}
	took := time.Since(began)
	db := filepath.Join(bench.dir, "index.db")
	fmt.Fprintf(os.Stderr, "bench: indexed %d crashes in %v (%.0f reports/s), index %d MiB on disk + WAL %d MiB\n",
		benchCrashes, took.Round(time.Millisecond), float64(benchCrashes)/took.Seconds(), fileSize(db)>>20, fileSize(db+"-wal")>>20)
	return nil
}

// benchGets requests the paths path(i) b.N times and reports latency
// percentiles: the targets are on p99, which ns/op does not show.
func benchGets(b *testing.B, path func(i int) string) {
	benchEnv(b)
	client := &http.Client{}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		resp, err := client.Get(bench.url + path(i))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %s, %d bytes, %v", path(i), resp.Status, n, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

func BenchmarkList(b *testing.B) {
	for _, tc := range []struct{ name, query string }{
		{"all", ""},
		{"node", "node=node-07"},
		{"namespace", "namespace=ns-3"},
		{"pod", "pod=pod-042"},
		{"exe", "exe=app07"},
		{"signature", "signature=" + url.QueryEscape("gocrash/v1:00000000000000ab")},
		{"status-failed", "status=failed"},
		{"since-24h", "since=24h"},
		{"node+status", "node=node-07&status=failed"},
		{"ui", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			prefix := "/api/v1/crashes?limit=50&"
			if tc.name == "ui" {
				prefix = "/?"
			}
			benchGets(b, func(int) string { return prefix + tc.query })
		})
	}
}

// BenchmarkListDeepPage follows cursors 100 pages deep: keyset paging must
// cost the same on page 100 as on page 1.
func BenchmarkListDeepPage(b *testing.B) {
	benchEnv(b)
	cursor := ""
	for range 100 {
		_, next, err := bench.index.Crashes(context.Background(), corepipe.CrashFilter{Limit: 50, Cursor: cursor})
		if err != nil {
			b.Fatal(err)
		}
		cursor = next
	}
	benchGets(b, func(int) string { return "/api/v1/crashes?limit=50&cursor=" + url.QueryEscape(cursor) })
}

func BenchmarkDetail(b *testing.B) {
	for _, prefix := range []string{"/api/v1/crashes/", "/crashes/"} {
		b.Run(map[string]string{"/api/v1/crashes/": "json", "/crashes/": "ui"}[prefix], func(b *testing.B) {
			benchGets(b, func(i int) string { return prefix + bench.stored[(i*7919)%len(bench.stored)] })
		})
	}
}

func BenchmarkGroups(b *testing.B) {
	b.Run("list", func(b *testing.B) { benchGets(b, func(int) string { return "/api/v1/groups" }) })
	b.Run("detail-json", func(b *testing.B) {
		benchGets(b, func(i int) string { return "/api/v1/groups/" + bench.sigs[i%len(bench.sigs)] })
	})
	b.Run("detail-ui", func(b *testing.B) {
		benchGets(b, func(i int) string { return "/groups/" + bench.sigs[i%len(bench.sigs)] })
	})
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// BenchmarkIngest indexes new crashes into the full index and reports the
// rate: one transaction each (one report at a time on the stream), and
// benchBatch a transaction (the follower draining a backlog).
func BenchmarkIngest(b *testing.B) {
	for _, tc := range []struct {
		name  string
		batch int
	}{{"one", 1}, {"batch", benchBatch}} {
		b.Run(tc.name, func(b *testing.B) {
			benchEnv(b)
			rng := rand.New(rand.NewPCG(3, uint64(tc.batch)))
			rs := make([]*corepipe.Report, b.N)
			for i := range rs {
				bench.newest = bench.newest.Add(time.Millisecond)
				rs[i] = benchReport(rng, benchCrashes+1, bench.newest)
			}
			ctx := context.Background()
			b.ResetTimer()
			start, cpu := time.Now(), testkit.CPUTime()
			for chunk := range slices.Chunk(rs, tc.batch) {
				if err := bench.index.UpsertBatch(ctx, chunk); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
			testkit.ReportCPUPer(b, cpu, b.N, "report")
		})
	}
}
