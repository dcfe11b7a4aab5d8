package index_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/index"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/sqlite"
)

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
