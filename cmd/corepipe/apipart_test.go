package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/pipetest"
	"github.com/corepipe/corepipe/sqlite"
)

// startAPIPart runs the api part on a loopback port and returns its address,
// and stop, which ends the part and fails the test unless it ended cleanly.
func startAPIPart(t *testing.T, ctx context.Context, idx *sqlite.Index, blobs corepipe.BlobStore, q reportsQueue, setup apiSetup) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	part := apiPart(slog.New(slog.DiscardHandler), ln, idx, blobs, q, "api", setup)
	done := make(chan error, 1)
	go func() { done <- part(ctx) }()
	return ln.Addr().String(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestAPIPartRebuild starts the api part with --rebuild on an empty index:
// the reports only in the blob store are indexed, then the stream is
// followed, and /readyz turns 200 once both are in.
func TestAPIPartRebuild(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := pipetest.Start(t)
	q, blobs := p.Queue, p.Blobs
	dir := t.TempDir()
	idx, err := sqlite.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()

	at := time.Now().UTC().Add(-time.Hour)
	for i := range 3 {
		r := &corepipe.Report{Schema: 1, ID: corepipe.NewID(at.Add(time.Duration(i) * time.Second)), Status: corepipe.StatusAnalyzed,
			CapturedAt: at.Add(time.Duration(i) * time.Second), Node: "n", Signature: "gocrash/v1:12"}
		b, _ := json.Marshal(r)
		if err := blobs.Put(ctx, corepipe.ReportKey(r.ID), bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		// Only the last one is also on the stream.
		if i == 2 {
			if err := q.PublishReport(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}

	addr, stop := startAPIPart(t, ctx, idx, blobs, q, apiSetup{rebuild: true, metrics: newRegistry()})
	defer stop()

	base := "http://" + addr
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(base + "/api/v1/groups")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"count":3`) {
		t.Errorf("once ready, the group should count the 3 reports once each: %s", body)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"corepipe_index_crashes 3", "corepipe_index_pending_reports 0", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
