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
	"sync"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/sqlite"
)

// The benchmarks share one index of benchCrashes crashes, built once per
// run in a temporary directory: go test -run '^$' -bench . -benchtime 500x ./api
const (
	benchCrashes = 100_000
	// Every benchStoredEvery-th crash has its full report stored, for the
	// detail benchmarks.
	benchStoredEvery = 100
)

var bench struct {
	once   sync.Once
	dir    string
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
	if bench.dir != "" {
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
	bench.once.Do(func() {
		bench.dir, bench.err = os.MkdirTemp("", "corepipe-bench-")
		if bench.err != nil {
			return
		}
		if bench.index, bench.err = sqlite.Open(filepath.Join(bench.dir, "index.db")); bench.err != nil {
			return
		}
		if bench.blobs, bench.err = fs.Open(filepath.Join(bench.dir, "blobs")); bench.err != nil {
			return
		}
		rng := rand.New(rand.NewPCG(1, 2))
		start := time.Now().Add(-30 * 24 * time.Hour)
		step := 30 * 24 * time.Hour / benchCrashes
		ctx := context.Background()
		began := time.Now()
		bench.err = bench.index.Rebuild(ctx, func(put func(*corepipe.Report) error) error {
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
				if err := put(r); err != nil {
					return err
				}
				bench.newest = r.CapturedAt
			}
			return nil
		})
		if bench.err != nil {
			return
		}
		fmt.Fprintf(os.Stderr, "bench: indexed %d crashes in %v\n", benchCrashes, time.Since(began).Round(time.Millisecond))
		groups, _, err := bench.index.Groups(ctx, corepipe.GroupFilter{Limit: 50})
		if bench.err = err; err != nil {
			return
		}
		for _, g := range groups {
			bench.sigs = append(bench.sigs, g.Signature)
		}
		srv, err := New(Config{Index: bench.index, Blobs: bench.blobs})
		if bench.err = err; err != nil {
			return
		}
		ts := httptest.NewServer(srv.Handler())
		bench.url = ts.URL
		bench.close = func() { ts.Close(); bench.index.Close() }
	})
	if bench.err != nil {
		b.Fatalf("build the benchmark index: %v", bench.err)
	}
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

// BenchmarkIngest indexes new crashes into the full index one transaction
// each, as the follower does, and reports the rate.
func BenchmarkIngest(b *testing.B) {
	benchEnv(b)
	rng := rand.New(rand.NewPCG(3, 4))
	rs := make([]*corepipe.Report, b.N)
	for i := range rs {
		rs[i] = benchReport(rng, benchCrashes+1, bench.newest.Add(time.Duration(i+1)*time.Millisecond))
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for _, r := range rs {
		if err := bench.index.Upsert(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
}
