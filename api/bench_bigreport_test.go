package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/signature"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/sqlite"
)

// leakOf is a report of n goroutines as a goroutine leak leaves them: a few
// hundred distinct stacks, 10 to 30 frames deep, most goroutines parked on
// a handful of them.
func leakOf(n int, at time.Time) *corepipe.Report {
	rng := rand.New(rand.NewPCG(12, 0))
	const distinct = 300
	stacks := make([][]corepipe.Frame, distinct)
	for s := range stacks {
		for d := range 10 + rng.IntN(21) {
			pkg := []string{"net/http", "github.com/example/shop/internal/orders", "github.com/example/shop/internal/db", "runtime"}[rng.IntN(4)]
			stacks[s] = append(stacks[s], corepipe.Frame{
				Function: fmt.Sprintf("%s.(*handler%d).serve%d.func%d", pkg, s%17, d, rng.IntN(4)),
				File:     fmt.Sprintf("/home/build/go/pkg/mod/%s@v1.4.2/handler%d.go", pkg, s%17),
				Line:     20 + rng.IntN(900), PC: fmt.Sprintf("%#x", 0x4a0000+rng.IntN(1<<20))})
		}
	}
	r := newReport(0)
	r.ID, r.CapturedAt = corepipe.NewID(at), at
	r.CrashingGoroutine = 1
	r.Goroutines = nil
	waits := []string{"chan receive", "select", "IO wait", "sync.Mutex.Lock", "sleep"}
	for i := range n {
		// A leak: most goroutines are on the first few stacks.
		s := min(int(rng.ExpFloat64()*20), distinct-1)
		w := waits[s%len(waits)]
		g := corepipe.Goroutine{ID: int64(i + 1), Status: "waiting", WaitReason: w, WaitMinutes: int64(rng.IntN(90)),
			CreatedBy: fmt.Sprintf("github.com/example/shop/internal/orders.(*Pool).start%d", s%5), Frames: stacks[s]}
		if i == 0 {
			g.Status, g.WaitReason, g.WaitMinutes = "running", "", 0
		}
		r.Goroutines = append(r.Goroutines, g)
	}
	r.GoroutineGroups = signature.GoroutineGroups(r.Goroutines)
	return r
}

// BenchmarkBigReport serves the crash page, the full JSON and a page of
// goroutines of a report of 100 000 goroutines, stored as plain JSON (as
// before the stored form) and in the stored form, and reports latency
// percentiles and the stored size.
//
// Each request of the plain form takes seconds: the benchmark runs only
// when COREPIPE_BENCH_BIGREPORT is set, not in `-bench . -benchtime 500x`.
//
//	COREPIPE_BENCH_BIGREPORT=1 go test -run '^$' -bench BigReport -benchtime 10x ./api/
func BenchmarkBigReport(b *testing.B) {
	if os.Getenv("COREPIPE_BENCH_BIGREPORT") == "" {
		b.Skip("set COREPIPE_BENCH_BIGREPORT=1 to serve a report of 100 000 goroutines")
	}
	dir := b.TempDir()
	idx, err := sqlite.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	blobs, err := fs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Config{Index: idx, Blobs: blobs})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	ids, sizes := map[string]string{}, map[string]int{}
	for i, form := range []string{"plain", "stored"} {
		r := leakOf(100_000, time.Now().Add(-time.Duration(i+1)*time.Minute))
		var body bytes.Buffer
		if form == "plain" {
			err = json.NewEncoder(&body).Encode(r)
		} else {
			err = r.WriteStored(&body)
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := blobs.Put(b.Context(), corepipe.ReportKey(r.ID), &body, -1); err != nil {
			b.Fatal(err)
		}
		if err := idx.Upsert(b.Context(), r); err != nil {
			b.Fatal(err)
		}
		st, err := blobs.Stat(b.Context(), corepipe.ReportKey(r.ID))
		if err != nil {
			b.Fatal(err)
		}
		ids[form], sizes[form] = r.ID, int(st)
	}
	for _, form := range []string{"plain", "stored"} {
		for _, page := range []struct{ name, path string }{
			{"ui", "/crashes/%s"},
			{"json", "/api/v1/crashes/%s"},
			{"goroutines", "/api/v1/crashes/%s/goroutines?offset=50000&limit=100"},
		} {
			b.Run(form+"/"+page.name, func(b *testing.B) {
				url := ts.URL + fmt.Sprintf(page.path, ids[form])
				var lat []time.Duration
				var served int64
				for b.Loop() {
					start := time.Now()
					resp, err := http.Get(url)
					if err != nil {
						b.Fatal(err)
					}
					served, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK {
						b.Fatalf("GET %s: %s, %v", url, resp.Status, err)
					}
					lat = append(lat, time.Since(start))
				}
				slices.Sort(lat)
				at := func(p float64) float64 {
					return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
				}
				b.ReportMetric(at(0.50), "p50-ms")
				b.ReportMetric(at(0.99), "p99-ms")
				b.ReportMetric(float64(sizes[form]), "stored-B")
				b.ReportMetric(float64(served), "served-B")
			})
		}
	}
}
