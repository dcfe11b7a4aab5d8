package retention_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/s3"
	"github.com/corepipe/corepipe/internal/testkit/miniotest"
	"github.com/corepipe/corepipe/retention"
	"github.com/corepipe/corepipe/sqlite"
)

// The sweep and the rebuild after it on S3 (a real MinIO): what the index
// says is stored is in the bucket, and a rebuilt index says the same.
func TestSweepAndRebuildOnMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	u, err := url.Parse(srv.URL("corepipe-retention"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := s3.Open(t.Context(), u, s3.WithCredentials(srv.Credentials()))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := sqlite.Open(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	put := func(key string, b []byte) {
		t.Helper()
		if err := blobs.Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		at := base.Add(time.Duration(i) * day)
		r := &corepipe.Report{Schema: corepipe.ReportSchema, ID: corepipe.NewID(at), Status: corepipe.StatusAnalyzed,
			CapturedAt: at, Node: "n", Signature: "gocrash/v1:aaaa"}
		c := &corepipe.Crash{ID: r.ID, CapturedAt: at, Node: r.Node}
		r.Artifacts.Core.Key = corepipe.CoreKey(c)
		r.Artifacts.Executable = corepipe.ExeArtifact{BuildID: "a1", Found: true, Key: corepipe.ExecutableKey("a1")}
		put(r.Artifacts.Core.Key, []byte("core"))
		put(r.Artifacts.Executable.Key, []byte("exe"))
		b, _ := json.Marshal(r)
		put(corepipe.ReportKey(r.ID), b)
		if err := idx.Upsert(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	sw, err := retention.New(retention.Config{Blobs: blobs, Index: idx, Cores: 30 * day, Reports: 39 * day, Keep: 1,
		Now: func() time.Time { return base.Add(40 * day) }})
	if err != nil {
		t.Fatal(err)
	}
	// Day 0 goes with its report; of days 1-5, 1 and 5 stay as exemplars.
	if st, err := sw.Pass(t.Context()); err != nil || st.Reports != 1 || st.Cores != 3 || st.Executables != 0 {
		t.Fatalf("pass = %+v, %v; want 1 report, 3 cores, no executable", st, err)
	}
	var cores []string
	blobs.List(t.Context(), "cores/", func(key string) error {
		if strings.HasSuffix(key, "/core.zst") {
			cores = append(cores, key)
		}
		return nil
	})
	var named []string
	for _, line := range describe(t, idx) {
		if key := line[strings.LastIndex(line, "key=")+4:]; key != "" {
			named = append(named, key)
		}
	}
	slices.Sort(named)
	if !slices.Equal(cores, named) {
		t.Errorf("stored cores %q, the index names %q", cores, named)
	}
	if got, want := describe(t, rebuilt(t, blobs)), describe(t, idx); !slices.Equal(got, want) || len(want) != 5 {
		t.Errorf("rebuilt index:\n%s\nswept index (want 5):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
