package retention_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/index"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/apitest"
	"github.com/corepipe/corepipe/retention"
	"github.com/corepipe/corepipe/sqlite"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// addCrash stores a crash of group sig captured at, with a core, a manifest
// and the executable of build, as the pipeline leaves them.
func addCrash(t *testing.T, s *apitest.Server, at time.Time, sig, build string) *corepipe.Report {
	t.Helper()
	r := &corepipe.Report{
		Schema: corepipe.ReportSchema, ID: corepipe.NewID(at), Status: corepipe.StatusAnalyzed,
		CapturedAt: at, Node: "node-a", Signature: sig, Title: "crash of " + sig,
		Process:    corepipe.Process{PID: 1, Exe: "/usr/bin/" + build},
		Goroutines: []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{{Function: "main.main"}}}},
	}
	s.Add(t, r, []byte("core of "+r.ID), []byte("exe "+build), build)
	r.Artifacts.Executable.BuildID = build
	s.Put(t, corepipe.ManifestKey(&corepipe.Crash{ID: r.ID, CapturedAt: at, Node: r.Node}), []byte("{}"))
	b, _ := json.Marshal(r)
	s.Put(t, corepipe.ReportKey(r.ID), b)
	if err := s.Index.Upsert(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

func exists(t *testing.T, s *apitest.Server, key string) bool {
	t.Helper()
	_, err := s.Blobs.Stat(t.Context(), key)
	if err != nil && !errors.Is(err, corepipe.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The scene: group A crashed once a day for 8 days from base, with build
// a1; group B once, on day 0, with build b1.
func scene(t *testing.T) (*apitest.Server, []*corepipe.Report, *corepipe.Report) {
	s := apitest.Start(t, "")
	var a []*corepipe.Report
	for i := range 8 {
		a = append(a, addCrash(t, s, base.Add(time.Duration(i)*day), "gocrash/v1:aaaa", "a1"))
	}
	b := addCrash(t, s, base, "gocrash/v1:bbbb", "b1")
	return s, a, b
}

// rebuilt is a new index, closed when the test ends, rebuilt from what
// blobs holds.
func rebuilt(t *testing.T, blobs corepipe.BlobStore) *sqlite.Index {
	t.Helper()
	idx, err := sqlite.Open(filepath.Join(t.TempDir(), "rebuilt.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	if _, err := index.Rebuild(t.Context(), blobs, idx, nil); err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestCoresExpireButExemplarsStay(t *testing.T) {
	s, a, b := scene(t)
	now := base.Add(40 * day)
	sw, err := retention.New(retention.Config{Blobs: s.Blobs, Index: s.Index, Cores: 30 * day, Keep: 2, Batch: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	// Two passes of at most 3: a[2:6] go, the first two and latest two of A
	// and B's only core stay.
	st, err := sw.Pass(t.Context())
	if err != nil || st.Cores != 3 || !st.MoreCores {
		t.Fatalf("first pass = %+v, %v; want 3 cores and more", st, err)
	}
	if st, err = sw.Pass(t.Context()); err != nil || st.Cores != 1 || st.MoreCores {
		t.Fatalf("second pass = %+v, %v; want 1 core and no more", st, err)
	}
	if st, err = sw.Pass(t.Context()); err != nil || st.Cores != 0 {
		t.Fatalf("third pass = %+v, %v; want nothing", st, err)
	}
	for i, r := range a {
		swept := i >= 2 && i < 6
		if got := exists(t, s, r.Artifacts.Core.Key); got == swept {
			t.Errorf("crash %d: core stored = %v, want %v", i, got, !swept)
		}
		sum, err := s.Index.Crash(t.Context(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		loc := sum.Artifacts.Core.Where(now)
		if want := map[bool]string{true: corepipe.CoreExpired, false: corepipe.CoreStored}[swept]; loc.State != want {
			t.Errorf("crash %d: index says the core is %s, want %s", i, loc.State, want)
		}
		code, body := get(t, s.URL+"/api/v1/crashes/"+r.ID+"/core")
		if swept && (code != http.StatusNotFound || !strings.Contains(body, "the core is expired at "+now.Format(time.RFC3339)) || !strings.Contains(body, "retention keeps cores 30d")) {
			t.Errorf("crash %d: GET core = %d %s, want 404 saying the core expired", i, code, body)
		}
		if !swept && code != http.StatusOK {
			t.Errorf("crash %d: GET core = %d %s, want 200", i, code, body)
		}
		if swept {
			// The stored report says so too, with when.
			code, body := get(t, s.URL+"/api/v1/crashes/"+r.ID)
			if code != http.StatusOK || !strings.Contains(body, `"state":"expired"`) || !strings.Contains(body, now.Format(time.RFC3339)) {
				t.Errorf("crash %d: report = %d %s, want the core expired at %v", i, code, body, now)
			}
			// The crash page says so, and links to no core.
			code, body = get(t, s.URL+"/crashes/"+r.ID)
			if code != http.StatusOK || !strings.Contains(body, "Core: expired at "+now.Format(time.RFC3339)) || strings.Contains(body, r.ID+"/core\"") {
				t.Errorf("crash %d: page = %d, want it to say the core expired and link to none:\n%s", i, code, body)
			}
		}
	}
	if !exists(t, s, b.Artifacts.Core.Key) || !exists(t, s, a[0].Artifacts.Executable.Key) {
		t.Error("B's only core, or A's executable that kept cores need, was deleted")
	}
}

func TestReportsExpireWithTheirBlobs(t *testing.T) {
	s, a, b := scene(t)
	now := base.Add(40 * day)
	sw, err := retention.New(retention.Config{Blobs: s.Blobs, Index: s.Index, Reports: 36 * day, Keep: 2, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	// Before day 4: a[0..3] and b go. A's executable stays, its later
	// cores need it; B's goes.
	st, err := sw.Pass(t.Context())
	if err != nil || st.Reports != 5 || st.Executables != 1 {
		t.Fatalf("pass = %+v, %v; want 5 reports and 1 executable", st, err)
	}
	for i, r := range append(slices.Clone(a), b) {
		gone := i < 4 || r == b
		c := &corepipe.Crash{ID: r.ID, CapturedAt: r.CapturedAt, Node: r.Node}
		for _, key := range []string{r.Artifacts.Core.Key, corepipe.ManifestKey(c), corepipe.ReportKey(r.ID)} {
			if exists(t, s, key) == gone {
				t.Errorf("crash %d: %s stored = %v, want %v", i, key, !gone, !gone)
			}
		}
		if _, err := s.Index.Crash(t.Context(), r.ID); errors.Is(err, corepipe.ErrNotFound) != gone {
			t.Errorf("crash %d: indexed = %v, want %v", i, err == nil, !gone)
		}
		code, _ := get(t, s.URL+"/api/v1/crashes/"+r.ID)
		if want := map[bool]int{true: http.StatusNotFound, false: http.StatusOK}[gone]; code != want {
			t.Errorf("crash %d: GET = %d, want %d", i, code, want)
		}
	}
	if exists(t, s, b.Artifacts.Executable.Key) || !exists(t, s, a[0].Artifacts.Executable.Key) {
		t.Error("want B's executable deleted and A's kept")
	}
	g, err := s.Index.Group(t.Context(), "gocrash/v1:aaaa")
	if err != nil || g.Count != 4 {
		t.Errorf("group A = %+v, %v; want 4 crashes left", g, err)
	}
}

// An executable goes with the last core that needs it.
func TestExecutableGoesWithItsLastCore(t *testing.T) {
	s, a, _ := scene(t)
	sw, err := retention.New(retention.Config{Blobs: s.Blobs, Index: s.Index, Cores: 30 * day, Keep: 0,
		Now: func() time.Time { return base.Add(60 * day) }})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sw.Pass(t.Context())
	if err != nil || st.Cores != 9 || st.Executables != 2 {
		t.Fatalf("pass = %+v, %v; want 9 cores and 2 executables", st, err)
	}
	code, body := get(t, s.URL+"/api/v1/crashes/"+a[0].ID+"/core")
	if code != http.StatusNotFound || !strings.Contains(body, "expired") {
		t.Errorf("GET core = %d %s, want 404 expired", code, body)
	}
	code, body = get(t, s.URL+"/api/v1/crashes/"+a[0].ID+"/executable")
	if code != http.StatusNotFound || !strings.Contains(body, "the executable expired with the core") {
		t.Errorf("GET executable = %d %s, want 404 saying it expired", code, body)
	}
}

// After a sweep, an index rebuilt from the blob store is the index the
// sweep left: the same crashes, each core where the sweep said.
func TestRebuildAgreesAfterSweep(t *testing.T) {
	s, _, _ := scene(t)
	sw, err := retention.New(retention.Config{Blobs: s.Blobs, Index: s.Index, Cores: 30 * day, Reports: 38 * day, Keep: 2,
		Now: func() time.Time { return base.Add(40 * day) }})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := sw.Pass(t.Context()); err != nil || st.Reports == 0 || st.Cores == 0 {
		t.Fatalf("pass = %+v, %v; want reports and cores swept", st, err)
	}
	fresh := rebuilt(t, s.Blobs)
	want, got := describe(t, s.Index), describe(t, fresh)
	if !slices.Equal(got, want) {
		t.Errorf("rebuilt index:\n%s\nswept index:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(want) != 6 {
		t.Errorf("swept index holds %d crashes, want 6", len(want))
	}
	// Every core the index says is stored is there, and no stored core is
	// one the index does not name.
	named := map[string]bool{}
	for _, line := range want {
		if key, ok := strings.CutPrefix(line[strings.LastIndex(line, " ")+1:], "key="); ok && key != "" {
			named[key] = true
			if !exists(t, s, key) {
				t.Errorf("the index names core %s, which is not stored", key)
			}
		}
	}
	s.Blobs.List(t.Context(), "cores/", func(key string) error {
		if strings.HasSuffix(key, "/core.zst") && !named[key] {
			t.Errorf("core %s is stored but named by no report", key)
		}
		return nil
	})
	for _, g := range []string{"gocrash/v1:aaaa", "gocrash/v1:bbbb"} {
		a, errA := s.Index.Group(t.Context(), g)
		b, errB := fresh.Group(t.Context(), g)
		if (errA == nil) != (errB == nil) || (errA == nil && (a.Count != b.Count || !a.FirstSeen.Equal(b.FirstSeen))) {
			t.Errorf("group %s: swept %+v (%v), rebuilt %+v (%v)", g, a, errA, b, errB)
		}
	}
}

func describe(t *testing.T, x interface {
	Crashes(context.Context, corepipe.CrashFilter) ([]*corepipe.Report, string, error)
}) []string {
	t.Helper()
	rs, _, err := x.Crashes(t.Context(), corepipe.CrashFilter{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		l := r.Artifacts.Core.Where(base)
		out = append(out, fmt.Sprintf("%s %s %s until=%s key=%s", r.ID, r.Signature, l.State, l.Until.Format(time.RFC3339), r.Artifacts.Core.Key))
	}
	return out
}

func TestNewRejects(t *testing.T) {
	s := apitest.Start(t, "")
	for _, cfg := range []retention.Config{
		{Index: s.Index},
		{Blobs: s.Blobs, Index: s.Index, Cores: -time.Hour},
		{Blobs: s.Blobs, Index: s.Index, Keep: -1},
	} {
		if _, err := retention.New(cfg); !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
}
