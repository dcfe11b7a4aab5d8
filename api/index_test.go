package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/sqlite"
)

var _ Index = (*sqlite.Index)(nil)

// readOnly shows the server an index without Upsert, as a read replica
// would be.
type readOnly struct{ idx *sqlite.Index }

func (r readOnly) Crashes(ctx context.Context, f corepipe.CrashFilter) ([]*corepipe.Report, string, error) {
	return r.idx.Crashes(ctx, f)
}
func (r readOnly) Crash(ctx context.Context, id string) (*corepipe.Report, error) {
	return r.idx.Crash(ctx, id)
}
func (r readOnly) Groups(ctx context.Context, f corepipe.GroupFilter) ([]*corepipe.Group, string, error) {
	return r.idx.Groups(ctx, f)
}
func (r readOnly) Group(ctx context.Context, signature string) (*corepipe.Group, error) {
	return r.idx.Group(ctx, signature)
}
func (r readOnly) Versions(ctx context.Context, signature string) ([]corepipe.Share, error) {
	return r.idx.Versions(ctx, signature)
}
func (r readOnly) Workloads(ctx context.Context, signature string) ([]corepipe.Share, error) {
	return r.idx.Workloads(ctx, signature)
}
func (r readOnly) Occurrences(ctx context.Context, signature string, from time.Time, step time.Duration, n int) ([]int64, error) {
	return r.idx.Occurrences(ctx, signature, from, step, n)
}

// TestReadOnlyIndex: the server serves from an index it cannot write.
func TestReadOnlyIndex(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	e.add(r, true)
	srv, err := New(Config{Index: readOnly{e.index}, Blobs: e.blobs})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/v1/crashes/" + r.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got corepipe.Report
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK || got.ID != r.ID {
		t.Fatalf("GET crash through a read-only index: %d, %v, id %q", resp.StatusCode, err, got.ID)
	}
}
