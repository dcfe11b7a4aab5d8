package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/sqlite"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(withBenchCleanup{m}) }

type env struct {
	t     *testing.T
	url   string
	index *sqlite.Index
	blobs *fs.Store
	ready bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, func(*Config) {})
}

// newEnvWith is newEnv with a server configured further by tweak.
func newEnvWith(t *testing.T, tweak func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	idx, err := sqlite.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := fs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, index: idx, blobs: blobs, ready: true}
	cfg := Config{Index: idx, Blobs: blobs, Ready: func() bool { return e.ready }}
	tweak(&cfg)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	e.url = ts.URL
	t.Cleanup(func() {
		ts.Close()
		if err := idx.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

var now = time.Now().UTC().Truncate(time.Millisecond)

// newReport is a Go nil-dereference crash captured age ago. The crashing
// goroutine is deliberately not first in Goroutines: the UI must find it by
// id, not by position.
func newReport(age time.Duration) *corepipe.Report {
	at := now.Add(-age)
	id := corepipe.NewID(at)
	return &corepipe.Report{
		Schema:     corepipe.ReportSchema,
		ID:         id,
		Status:     corepipe.StatusAnalyzed,
		CapturedAt: at,
		Node:       "node-a",
		Process: corepipe.Process{
			PID: 4242, NSPID: 1, Exe: "/usr/local/bin/server", Comm: "server",
			Cmdline: []string{"/usr/local/bin/server", "-listen", ":8080"},
		},
		Container: &corepipe.Container{Namespace: "prod", Pod: "server-0", Container: "server", Image: "registry/server:v1"},
		Signal:    &corepipe.Signal{Number: 6, Name: "SIGABRT"},
		Fault:     &corepipe.Fault{Signal: 11, Name: "SIGSEGV", Code: 1, CodeName: "SEGV_MAPERR", Address: "0x0", PC: "0x4a1b2c"},
		Panic:     &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: "runtime error: invalid memory address or nil pointer dereference"},
		Go:        &corepipe.GoInfo{Version: "go1.26.8", MainModule: "example.com/server", VCSRevision: "abc123"},

		CrashingGoroutine: 7,
		Goroutines: []corepipe.Goroutine{
			{ID: 1, Status: "waiting", WaitReason: "chan receive", WaitMinutes: 3, Frames: []corepipe.Frame{
				{Function: "main.waitForSignal", File: "/src/server/main.go", Line: 40},
				{Function: "main.main", File: "/src/server/main.go", Line: 20},
			}},
			{ID: 7, Status: "running", CreatedBy: "main.(*server).serve", Frames: []corepipe.Frame{
				{Function: "main.(*server).retries", File: "/src/server/server.go", Line: 88},
				{Function: "main.handle", File: "/src/server/server.go", Line: 61},
			}},
		},
		Threads:   []corepipe.Thread{{ID: 4242, PC: "0x4a1b2c", SP: "0xc000123000", Function: "runtime.raise", File: "/go/src/runtime/sys_linux_amd64.s", Line: 154}},
		Signature: "gocrash/v1:0123456789abcdef",
		Title:     "nil pointer dereference in main.(*server).retries",
	}
}

// add indexes r and, with stored, puts its full report where the analyzer
// would.
func (e *env) add(r *corepipe.Report, stored bool) {
	e.t.Helper()
	ctx := context.Background()
	if stored {
		b, err := json.Marshal(r)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := e.blobs.Put(ctx, corepipe.ReportKey(r.ID), bytes.NewReader(b), int64(len(b))); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.index.Upsert(ctx, r); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) put(key string, b []byte) {
	e.t.Helper()
	if err := e.blobs.Put(context.Background(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(path string) (*http.Response, []byte) {
	e.t.Helper()
	resp, err := http.Get(e.url + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp, body
}

// getOK fetches path and fails the test unless it answered 200.
func (e *env) getOK(path string) (*http.Response, []byte) {
	e.t.Helper()
	resp, body := e.get(path)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	return resp, body
}

func (e *env) list(query string) ([]string, string) {
	e.t.Helper()
	_, body := e.getOK("/api/v1/crashes?" + query)
	var out struct {
		Crashes    []corepipe.Report `json:"crashes"`
		NextCursor *string           `json:"next_cursor"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		e.t.Fatalf("decode %s: %v", body, err)
	}
	if out.Crashes == nil || out.NextCursor == nil {
		e.t.Fatalf("list %q: crashes and next_cursor must always be present: %s", query, body)
	}
	ids := []string{}
	for _, c := range out.Crashes {
		if len(c.Goroutines) > 0 || len(c.Threads) > 0 {
			e.t.Errorf("list returned goroutines or threads: summaries only")
		}
		ids = append(ids, c.ID)
	}
	return ids, *out.NextCursor
}

func wantError(t *testing.T, resp *http.Response, body []byte, status int, contains string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d: %s", resp.Request.URL, resp.StatusCode, status, body)
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", resp.Request.URL, ct)
	}
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("%s: body %s is not {\"error\": …}", resp.Request.URL, body)
	}
	if !strings.Contains(e.Error, contains) {
		t.Errorf("%s: error %q does not say %q", resp.Request.URL, e.Error, contains)
	}
}

func TestListOrderAndFilters(t *testing.T) {
	e := newEnv(t)
	old := newReport(48 * time.Hour)
	mid := newReport(2 * time.Hour)
	mid.Node = "node-b"
	mid.Container = &corepipe.Container{Namespace: "staging", Pod: "worker-3"}
	mid.Process.Exe = "/opt/bin/worker"
	mid.Status = corepipe.StatusFailed
	mid.Signature = "gocrash/v1:ffff"
	recent := newReport(time.Minute)
	e.add(mid, true)
	e.add(recent, true)
	e.add(old, true)

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{recent.ID, mid.ID, old.ID}},
		{"node=node-b", []string{mid.ID}},
		{"namespace=prod", []string{recent.ID, old.ID}},
		{"pod=worker-3", []string{mid.ID}},
		{"exe=worker", []string{mid.ID}},
		{"exe=" + url.QueryEscape("/usr/local/bin/server"), []string{recent.ID, old.ID}},
		{"signature=" + url.QueryEscape("gocrash/v1:ffff"), []string{mid.ID}},
		{"status=failed", []string{mid.ID}},
		{"since=24h", []string{recent.ID, mid.ID}},
		{"since=" + url.QueryEscape(mid.CapturedAt.Format(time.RFC3339Nano)), []string{recent.ID, mid.ID}},
		{"since=24h&namespace=prod", []string{recent.ID}},
		{"node=nowhere", []string{}},
	} {
		got, next := e.list(tc.query)
		if !slices.Equal(got, tc.want) {
			t.Errorf("?%s: got %v, want %v", tc.query, got, tc.want)
		}
		if next != "" {
			t.Errorf("?%s: next_cursor %q on the only page", tc.query, next)
		}
	}
}

func TestListPaging(t *testing.T) {
	e := newEnv(t)
	var want []string
	for i := range 7 {
		r := newReport(time.Duration(i) * time.Minute)
		e.add(r, false)
		want = append(want, r.ID)
	}
	var got []string
	cursor := ""
	for pages := 1; ; pages++ {
		ids, next := e.list("limit=3&cursor=" + url.QueryEscape(cursor))
		got = append(got, ids...)
		if next == "" {
			if pages != 3 {
				t.Errorf("pages = %d, want 3", pages)
			}
			break
		}
		cursor = next
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged = %v, want %v", got, want)
	}
}

func TestListBadQuery(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ query, says string }{
		{"since=yesterday", "since"},
		{"since=-1h", "since"},
		{"since=2025-13-01T00:00:00Z", "since"},
		{"limit=abc", "limit"},
		{"limit=0", "limit"},
		{"limit=-5", "limit"},
		{"cursor=not-a-cursor", "cursor"},
		{"cursor=" + url.QueryEscape("<script>"), "cursor"},
		{"status=exploded", "status"},
	} {
		resp, body := e.get("/api/v1/crashes?" + tc.query)
		wantError(t, resp, body, http.StatusBadRequest, tc.says)
	}
}

func TestGetCrash(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	e.add(r, true)

	resp, body := e.getOK("/api/v1/crashes/" + r.ID)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got corepipe.Report
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != r.ID || len(got.Goroutines) != 2 || len(got.Threads) != 1 || got.Fault.Address != "0x0" {
		t.Errorf("report came back different: %s", body)
	}
}

func TestGetCrashErrors(t *testing.T) {
	e := newEnv(t)
	pending := newReport(time.Minute)
	pending.Status = corepipe.StatusPending
	e.add(pending, false)

	resp, body := e.get("/api/v1/crashes/" + corepipe.NewID(now))
	wantError(t, resp, body, http.StatusNotFound, "not indexed")

	resp, body = e.get("/api/v1/crashes/" + pending.ID)
	wantError(t, resp, body, http.StatusNotFound, "not in the blob store")

	for _, id := range []string{
		"..%2f..%2fetc",
		"..%2F..%2F..%2Fetc%2Fpasswd",
		"01ABC",
		"abcdefghijklmnopqrstuvwxyz",
		strings.ToLower(pending.ID),
		pending.ID + "0",
	} {
		for _, suffix := range []string{"", "/core", "/executable"} {
			resp, body := e.get("/api/v1/crashes/" + id + suffix)
			wantError(t, resp, body, http.StatusBadRequest, "crash id")
		}
	}
}

func zstdBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCoreDownload(t *testing.T) {
	e := newEnv(t)
	// Larger than the first chunk the server reads before answering, with
	// compressible runs as a real core has.
	core := make([]byte, 3<<20+123)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(core); i += 4096 {
		if rng.IntN(2) == 0 {
			for j := i; j < min(i+4096, len(core)); j++ {
				core[j] = byte(rng.Uint32())
			}
		}
	}
	small := []byte("\x7fELF tiny core")

	for _, raw := range [][]byte{core, small} {
		r := newReport(time.Minute)
		r.Artifacts.Core = corepipe.CoreArtifact{Size: int64(len(raw)), Key: corepipe.CoreKey(&corepipe.Crash{ID: r.ID, CapturedAt: r.CapturedAt, Node: r.Node})}
		e.put(r.Artifacts.Core.Key, zstdBytes(t, raw))
		e.add(r, true)

		resp, body := e.getOK("/api/v1/crashes/" + r.ID + "/core")
		if !bytes.Equal(body, raw) {
			t.Errorf("%d-byte core: got %d bytes back, not the original", len(raw), len(body))
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("Content-Type = %q", ct)
		}
		if cd, want := resp.Header.Get("Content-Disposition"), "attachment; filename=core-"+r.ID; cd != want {
			t.Errorf("Content-Disposition = %q, want %q", cd, want)
		}
	}
}

func TestCoreErrors(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		dropped string
		key     string // %s is the crash's ID
		blob    []byte // stored under key, unless nil
		status  int
		want    string
	}{
		{"spool over max_use", "", nil, http.StatusNotFound, "spool over max_use"},
		{"", "cores/2025/01/01/node-a/%s/core.zst", nil, http.StatusNotFound, "not in the blob store"},
		// A corrupt object fails before any byte is sent, so the client gets
		// an error status, and the decoder's detail stays in the log.
		{"", "cores/2025/01/01/node-a/%s/core.zst", []byte("this is not zstd at all"), http.StatusInternalServerError, "internal error"},
		// A key outside the artifact prefixes is never read, whatever the
		// index says.
		{"", "reports/%s.json", nil, http.StatusInternalServerError, "internal error"},
	} {
		r := newReport(time.Minute)
		r.Artifacts.Core = corepipe.CoreArtifact{Dropped: tc.dropped}
		if tc.key != "" {
			r.Artifacts.Core.Key = fmt.Sprintf(tc.key, r.ID)
		}
		if tc.blob != nil {
			e.put(r.Artifacts.Core.Key, tc.blob)
		}
		e.add(r, true)
		resp, body := e.get("/api/v1/crashes/" + r.ID + "/core")
		wantError(t, resp, body, tc.status, tc.want)
	}
}

// TestCoreTruncatedMidStream checks that a core whose object breaks after
// the response has started is a failed download for the client, not a short
// file that looks complete.
func TestCoreTruncatedMidStream(t *testing.T) {
	e := newEnv(t)
	raw := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{3}).Read(raw)
	z := zstdBytes(t, raw)
	r := newReport(time.Minute)
	r.Artifacts.Core.Key = "cores/2025/01/01/node-a/" + r.ID + "/core.zst"
	e.put(r.Artifacts.Core.Key, z[:len(z)/2])
	e.add(r, true)

	resp, err := http.Get(e.url + "/api/v1/crashes/" + r.ID + "/core")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s: the first chunk should have decoded", resp.Status)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil {
		t.Errorf("read %d of %d bytes and no error: the client cannot tell the core is incomplete", n, len(raw))
	}
}

func TestExecutableDownload(t *testing.T) {
	e := newEnv(t)
	exe := []byte("\x7fELF executable bytes")
	r := newReport(time.Minute)
	r.Artifacts.Executable = corepipe.ExeArtifact{Path: "/usr/local/bin/server", SHA256: "abcd", Found: true, Key: corepipe.ExecutableKey("abcd")}
	e.put(r.Artifacts.Executable.Key, exe)
	e.add(r, true)

	resp, body := e.getOK("/api/v1/crashes/" + r.ID + "/executable")
	if !bytes.Equal(body, exe) {
		t.Errorf("executable = %q", body)
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != "attachment; filename=server" {
		t.Errorf("Content-Disposition = %q", cd)
	}

	missing := newReport(time.Minute)
	e.add(missing, true)
	resp, body = e.get("/api/v1/crashes/" + missing.ID + "/executable")
	wantError(t, resp, body, http.StatusNotFound, "not captured")
}

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t)
	if _, body := e.getOK("/healthz"); string(body) != "ok\n" {
		t.Errorf("healthz = %q", body)
	}
	e.getOK("/readyz")
	e.ready = false
	resp, body := e.get("/readyz")
	wantError(t, resp, body, http.StatusServiceUnavailable, "catching up")
}

func TestErrorStatus(t *testing.T) {
	for err, want := range map[error]int{
		corepipe.ErrInvalid:        http.StatusBadRequest,
		corepipe.ErrUnauthorized:   http.StatusUnauthorized,
		corepipe.ErrForbidden:      http.StatusForbidden,
		corepipe.ErrNotFound:       http.StatusNotFound,
		corepipe.ErrUnavailable:    http.StatusServiceUnavailable,
		errors.New("disk on fire"): http.StatusInternalServerError,
	} {
		if got := errorStatus(fmt.Errorf("context: %w", err)); got != want {
			t.Errorf("errorStatus(%v) = %d, want %d", err, got, want)
		}
	}
}

func TestUIList(t *testing.T) {
	e := newEnv(t)
	a := newReport(2 * time.Minute)
	b := newReport(time.Minute)
	b.Node = "node-b"
	b.Title = "concurrent map writes in main.cache"
	e.add(a, true)
	e.add(b, true)

	resp, page := e.getOK("/")
	body := string(page)
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	for _, want := range []string{"/crashes/" + a.ID, "/crashes/" + b.ID, "node-b", "SIGABRT", "SIGSEGV", "analyzed", "server", template.HTMLEscapeString(a.Title)} {
		if !strings.Contains(body, want) {
			t.Errorf("list page lacks %q", want)
		}
	}
	if strings.Index(body, b.ID) > strings.Index(body, a.ID) {
		t.Error("list page is not newest first")
	}

	_, page = e.getOK("/?node=node-b")
	if body := string(page); strings.Contains(body, a.ID) || !strings.Contains(body, b.ID) {
		t.Error("node filter not applied to the list page")
	}

	_, page = e.getOK("/?limit=1&exe=server")
	body = string(page)
	if !strings.Contains(body, b.ID) || strings.Contains(body, a.ID) {
		t.Fatal("first page of one is not the newest crash")
	}
	next := between(body, `rel="next" href="`, `"`)
	if next == "" {
		t.Fatal("no next page link")
	}
	next = strings.ReplaceAll(next, "&amp;", "&")
	if !strings.Contains(next, "exe=server") {
		t.Errorf("next link %q drops the filter", next)
	}
	_, page = e.getOK(next)
	if body := string(page); !strings.Contains(body, a.ID) || strings.Contains(body, b.ID) {
		t.Errorf("second page via %q does not hold the older crash", next)
	}

	resp, page = e.get("/?since=whenever")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(page), "since") {
		t.Errorf("bad filter: %s: %s", resp.Status, page)
	}
}

func TestUICrash(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	e.add(r, true)

	_, page := e.getOK("/crashes/" + r.ID)
	body := string(page)
	for _, want := range []string{
		template.HTMLEscapeString(r.Title), "SIGSEGV", "SEGV_MAPERR", "0x4a1b2c", r.Panic.Message,
		"4242", "/usr/local/bin/server -listen :8080", "server-0", "prod", "go1.26.8", "abc123",
		"/src/server/server.go:88", "chan receive", "created by", "runtime.raise",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("detail page lacks %q", want)
		}
	}
	crashing := strings.Index(body, template.HTMLEscapeString("main.(*server).retries"))
	other := strings.Index(body, "main.waitForSignal")
	if crashing < 0 || other < 0 || crashing > other {
		t.Errorf("crashing goroutine's frame at %d, other goroutine's at %d: the crashing one must come first", crashing, other)
	}
	if fn, loc := strings.Index(body, "main.handle"), strings.Index(body, "/src/server/server.go:61"); fn > loc {
		t.Error("a frame's file:line must come under its function")
	}
}

func TestUICrashPending(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	r.Status = corepipe.StatusPending
	e.add(r, false)
	_, page := e.getOK("/crashes/" + r.ID)
	if !strings.Contains(string(page), "not stored yet") {
		t.Errorf("pending crash page does not say its report is missing")
	}
}

func TestUIErrors(t *testing.T) {
	e := newEnv(t)
	for path, status := range map[string]int{
		"/crashes/..%2f..%2fetc":              http.StatusBadRequest,
		"/crashes/" + corepipe.NewID(now):     http.StatusNotFound,
		"/crashes/" + strings.Repeat("z", 26): http.StatusBadRequest,
	} {
		resp, body := e.get(path)
		if resp.StatusCode != status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(string(body), "crash") {
			t.Errorf("%s: error page does not say what went wrong: %s", path, body)
		}
	}
}

// TestUIEscapes feeds the UI the text a hostile program can put in its own
// crash: none of it may become markup.
func TestUIEscapes(t *testing.T) {
	e := newEnv(t)
	const evil = `<script>alert("pwned")</script>`
	r := newReport(time.Minute)
	r.Title = ""
	r.Panic.Message = evil
	r.Node = `"><img src=x onerror=alert(1)>`
	r.Process.Cmdline = []string{"server", evil}
	r.Goroutines[1].Frames[0].Function = evil
	r.Goroutines[0].Labels = map[string]string{"k": evil}
	e.add(r, true)

	for _, path := range []string{"/", "/crashes/" + r.ID} {
		_, page := e.getOK(path)
		body := string(page)
		if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
			t.Errorf("%s: crash text became markup", path)
		}
		if !strings.Contains(body, "&lt;script&gt;") {
			t.Errorf("%s: escaped panic message missing", path)
		}
	}
	resp, _ := e.getOK("/crashes/" + r.ID)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP = %q", csp)
	}
}

func TestStatic(t *testing.T) {
	e := newEnv(t)
	resp, body := e.getOK("/static/style.css")
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || len(body) == 0 {
		t.Errorf("style.css: %s, %d bytes", resp.Header.Get("Content-Type"), len(body))
	}
	if resp, _ := e.get("/static/../ui/layout.html"); resp.StatusCode == http.StatusOK {
		t.Error("a template is reachable through /static/")
	}
}

// TestNoDelve holds the line of style.md: the API serves reports, it never
// reads cores itself.
func TestNoDelve(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if strings.Contains(string(out), "github.com/go-delve/") {
		t.Error("package api depends on delve")
	}
}

func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}
