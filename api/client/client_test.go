package client_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/client"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/apitest"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

const (
	viewer   = "viewer-token-0123456789"
	debugger = "debugger-token-0123456789"
)

type server struct {
	url   string
	core  []byte
	exe   []byte
	crash *corepipe.Report
	older *corepipe.Report
}

// start serves one crash with its core and executable stored, and an older
// one without artifacts, behind tokens.
func start(t *testing.T) *server {
	t.Helper()
	srv := apitest.Start(t, viewer+" viewer\n"+debugger+" debugger\n")
	s := &server{url: srv.URL, core: bytes.Repeat([]byte("core bytes "), 100_000), exe: []byte("\x7fELF executable")}
	at := time.Now().UTC().Truncate(time.Millisecond)
	for i, age := range []time.Duration{time.Hour, time.Minute} {
		r := &corepipe.Report{
			Schema: corepipe.ReportSchema, ID: corepipe.NewID(at.Add(-age)), Status: corepipe.StatusAnalyzed,
			CapturedAt: at.Add(-age), Node: "node-a", Process: corepipe.Process{PID: 7, Exe: "/usr/bin/server"},
			Title: "nil pointer dereference in main.handle", Signature: "gocrash/v1:ab",
			CrashingGoroutine: 1,
			Goroutines: []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{
				{Function: "main.handle", File: "/src/main.go", Line: 12}}}},
		}
		if i == 1 {
			srv.Add(t, r, s.core, s.exe, "abc")
			s.crash = r
		} else {
			srv.Add(t, r, nil, nil, "")
			s.older = r
		}
	}
	return s
}

func newClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	c, err := client.New(url, token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestListAndShow(t *testing.T) {
	s := start(t)
	c := newClient(t, s.url, viewer)
	ctx := context.Background()
	crashes, next, err := c.Crashes(ctx, corepipe.CrashFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(crashes) != 1 || crashes[0].ID != s.crash.ID || next == "" {
		t.Fatalf("first page: %d crashes, next %q", len(crashes), next)
	}
	crashes, next, err = c.Crashes(ctx, corepipe.CrashFilter{Limit: 1, Cursor: next})
	if err != nil || len(crashes) != 1 || crashes[0].ID != s.older.ID || next != "" {
		t.Fatalf("second page: %v %q %v", crashes, next, err)
	}
	crashes, _, err = c.Crashes(ctx, corepipe.CrashFilter{Since: time.Now().Add(-10 * time.Minute), Node: "node-a", Exe: "server"})
	if err != nil || len(crashes) != 1 {
		t.Errorf("filtered: %d crashes, %v", len(crashes), err)
	}
	r, err := c.Crash(ctx, s.crash.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Goroutines) != 1 || r.Goroutines[0].Frames[0].Function != "main.handle" {
		t.Errorf("full report lacks its goroutines: %+v", r)
	}
}

func TestErrors(t *testing.T) {
	s := start(t)
	ctx := context.Background()
	for _, tc := range []struct {
		token string
		call  func(*client.Client) error
		want  error
	}{
		{"", func(c *client.Client) error { _, _, err := c.Crashes(ctx, corepipe.CrashFilter{}); return err }, corepipe.ErrUnauthorized},
		{"wrong-token-wrong-token", func(c *client.Client) error { _, err := c.Crash(ctx, s.crash.ID); return err }, corepipe.ErrUnauthorized},
		{viewer, func(c *client.Client) error { _, err := c.Fetch(ctx, s.crash.ID, t.TempDir(), false); return err }, corepipe.ErrForbidden},
		{viewer, func(c *client.Client) error { _, err := c.Crash(ctx, corepipe.NewID(time.Now())); return err }, corepipe.ErrNotFound},
		{viewer, func(c *client.Client) error { _, err := c.Crash(ctx, "../etc/passwd"); return err }, corepipe.ErrInvalid},
		{viewer, func(c *client.Client) error {
			_, _, err := c.Crashes(ctx, corepipe.CrashFilter{Status: "exploded"})
			return err
		}, corepipe.ErrInvalid},
		{debugger, func(c *client.Client) error { _, err := c.Fetch(ctx, s.older.ID, t.TempDir(), false); return err }, corepipe.ErrNotFound},
	} {
		err := tc.call(newClient(t, s.url, tc.token))
		if !errors.Is(err, tc.want) {
			t.Errorf("token %q: err = %v, want %v", tc.token, err, tc.want)
		}
	}
	if _, err := client.New("ftp://example.com", ""); !errors.Is(err, corepipe.ErrInvalid) {
		t.Errorf("ftp server: %v", err)
	}
	_, _, err := newClient(t, "http://127.0.0.1:1", viewer).Crashes(ctx, corepipe.CrashFilter{})
	if !errors.Is(err, corepipe.ErrUnavailable) {
		t.Errorf("no server: %v", err)
	}
}

func TestFetch(t *testing.T) {
	s := start(t)
	c := newClient(t, s.url, debugger)
	dir := filepath.Join(t.TempDir(), "crash")
	f, err := c.Fetch(context.Background(), s.crash.ID, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if f.Core != filepath.Join(dir, "core-"+s.crash.ID) || f.Executable != filepath.Join(dir, "server") {
		t.Errorf("fetched to %+v", f)
	}
	for path, want := range map[string][]byte{f.Core: s.core, f.Executable: s.exe} {
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, want %d (%v)", path, len(got), len(want), err)
		}
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, st.Mode())
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".corepipe-download") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}

	// Reuse keeps complete files: a server that is gone is not asked.
	gone := newClient(t, "http://127.0.0.1:1", debugger)
	again, err := gone.Fetch(context.Background(), s.crash.ID, dir, true)
	if err != nil || again != f {
		t.Errorf("reuse: %+v, %v", again, err)
	}
	if _, err := gone.Fetch(context.Background(), s.crash.ID, t.TempDir(), true); err == nil {
		t.Error("reuse in an empty directory did not download")
	}
}

// TestFetchTruncated checks that a download the server breaks off leaves no
// file that looks complete.
func TestFetchTruncated(t *testing.T) {
	id := corepipe.NewID(time.Now())
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("only the start"))
	}))
	defer ts.Close()
	dir := t.TempDir()
	if _, err := newClient(t, ts.URL, "").Fetch(context.Background(), id, dir, false); err == nil {
		t.Fatal("a truncated download succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("files left after a failed download: %v", entries)
	}
}
