package api

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// debugBuild is a Go program split as the README's recipe does: the
// unstripped build, its --only-keep-debug file and its GNU build ID.
type debugBuild struct {
	exe, debug, shipped, id string
}

func newDebugBuild(t *testing.T, flags ...string) debugBuild {
	t.Helper()
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": "package main\n\nfunc main() { println(\"hello\") }\n"}, Flags: flags})
	b := debugBuild{exe: exe, shipped: exe + ".shipped"}
	b.debug = crashtest.SplitDebug(t, exe, b.shipped)
	if b.id = crashtest.BuildIDs(t, exe).GNU; b.id == "" {
		t.Fatal("no GNU build ID")
	}
	return b
}

func (e *env) send(method, path, token string, body io.Reader) (*http.Response, []byte) {
	e.t.Helper()
	header := http.Header{}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	return e.do(method, path, header, body)
}

func (e *env) upload(token, id, path string) (*http.Response, []byte) {
	e.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	return e.send(http.MethodPut, SymbolsPath+"/"+id+"?name="+filepath.Base(path), token, f)
}

func TestSymbolUploadIsIdempotent(t *testing.T) {
	e := newEnv(t)
	b := newDebugBuild(t)
	resp, body := e.upload("", b.id, b.debug)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %s: %s", resp.Status, body)
	}
	var res wire.Uploaded
	if err := json.Unmarshal(body, &res); err != nil || !res.Stored || res.Meta.GNUBuildID != b.id {
		t.Fatalf("upload answer %s: %v", body, err)
	}
	resp, body = e.upload("", b.id, b.exe)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"stored":false`) {
		t.Fatalf("second upload: %s: %s", resp.Status, body)
	}
	_, body = e.getOK(SymbolsPath)
	var list wire.SymbolList
	if err := json.Unmarshal(body, &list); err != nil || len(list.Symbols) != 1 || list.Symbols[0].SHA256 != res.Meta.SHA256 {
		t.Errorf("list after two uploads of one build: %s", body)
	}
}

func TestSymbolUploadRefused(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.MaxSymbolSize = 4 << 20 })
	b := newDebugBuild(t)
	sw := newDebugBuild(t, "-ldflags=-s -w")
	big := filepath.Join(t.TempDir(), "big")
	os.WriteFile(big, make([]byte, 5<<20), 0o644)
	for _, tc := range []struct {
		name, id, path, want string
	}{
		{"stripped", b.id, b.shipped, "no .debug_info"},
		{"-s -w", sw.id, sw.exe, "no .debug_info"},
		{"other build ID", sw.id, b.debug, "carries build IDs gnu:" + b.id},
		{"not a build ID", "abc.def", b.debug, "not a build ID"},
		{"over the limit", b.id, big, "larger than the limit of 4 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.upload("", tc.id, tc.path)
			wantError(t, resp, body, http.StatusBadRequest, tc.want)
		})
	}
	if _, body := e.getOK(SymbolsPath); !strings.Contains(string(body), `"symbols":[]`) {
		t.Errorf("refused uploads were stored: %s", body)
	}
}

func TestSymbolRoutesAuth(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t) })
	b := newDebugBuild(t)
	debuginfo := "/buildid/" + b.id + "/debuginfo"
	if resp, body := e.upload("", b.id, b.debug); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("upload without a token: %s: %s", resp.Status, body)
	}
	resp, body := e.upload(viewerToken, b.id, b.debug)
	wantError(t, resp, body, http.StatusForbidden, "needs the debugger role")
	if resp, body := e.upload(debuggerToken, b.id, b.debug); resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload as debugger: %s: %s", resp.Status, body)
	}
	for _, tc := range []struct {
		path, token string
		status      int
	}{
		{SymbolsPath, "", http.StatusUnauthorized},
		{SymbolsPath, viewerToken, http.StatusOK},
		{SymbolsPath + "/" + b.id, viewerToken, http.StatusOK},
		{debuginfo, "", http.StatusUnauthorized},
		{debuginfo, viewerToken, http.StatusForbidden},
		{debuginfo, debuggerToken, http.StatusOK},
		{"/buildid/" + b.id + "/section/.debug_info", viewerToken, http.StatusForbidden},
	} {
		if resp, body := e.send(http.MethodGet, tc.path, tc.token, nil); resp.StatusCode != tc.status {
			t.Errorf("GET %s with %q: %s, want %d: %.200s", tc.path, tc.token, resp.Status, tc.status, body)
		}
	}
}

func TestDebuginfodRoutes(t *testing.T) {
	e := newEnv(t)
	b := newDebugBuild(t)
	if resp, body := e.upload("", b.id, b.debug); resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %s: %s", resp.Status, body)
	}
	want, _ := os.ReadFile(b.debug)
	resp, body := e.getOK("/buildid/" + b.id + "/debuginfo")
	if !bytes.Equal(body, want) {
		t.Errorf("debuginfo: %d bytes, not the uploaded %d", len(body), len(want))
	}
	if resp.Header.Get("X-DEBUGINFOD-SIZE") != strconv.Itoa(len(want)) || resp.Header.Get("X-DEBUGINFOD-FILE") != filepath.Base(b.debug) {
		t.Errorf("headers %v", resp.Header)
	}

	f, err := elf.Open(b.debug)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := f.Section(".debug_info")
	raw := make([]byte, s.FileSize)
	fh, _ := os.Open(b.debug)
	defer fh.Close()
	fh.ReadAt(raw, int64(s.Offset))
	_, body = e.getOK("/buildid/" + b.id + "/section/.debug_info")
	if !bytes.Equal(body, raw) {
		t.Errorf("section .debug_info: %d bytes, not the file's %d", len(body), len(raw))
	}

	for _, path := range []string{
		"/buildid/" + strings.Repeat("ab", 20) + "/debuginfo",
		"/buildid/" + b.id + "/executable", // an --only-keep-debug file has no code
		"/buildid/" + b.id + "/section/.no_such",
		"/buildid/" + b.id + "/source",
	} {
		resp, body := e.get(path)
		wantError(t, resp, body, http.StatusNotFound, "")
	}
}

// TestDebuginfodFind: elfutils' own client fetches from the endpoint what
// it fetches from a debuginfod server, with the token from a headers file
// when auth is on.
func TestDebuginfodFind(t *testing.T) {
	find, err := exec.LookPath("debuginfod-find")
	if err != nil {
		t.Skip("SKIP: debuginfod-find is not installed (scripts/install-tools.sh installs Debian's debuginfod package)")
	}
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t) })
	b := newDebugBuild(t)
	if resp, body := e.upload(debuggerToken, b.id, b.debug); resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %s: %s", resp.Status, body)
	}
	headers := filepath.Join(t.TempDir(), "headers")
	os.WriteFile(headers, []byte("Authorization: Bearer "+debuggerToken+"\n"), 0o600)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(find, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DEBUGINFOD_URLS=" + e.url, "DEBUGINFOD_CACHE_PATH=" + t.TempDir(), "DEBUGINFOD_HEADERS_FILE=" + headers, "DEBUGINFOD_TIMEOUT=10"}
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	path, err := run("debuginfo", b.id)
	if err != nil {
		t.Fatalf("debuginfod-find debuginfo: %v", err)
	}
	got, _ := os.ReadFile(path)
	want, _ := os.ReadFile(b.debug)
	if !bytes.Equal(got, want) {
		t.Errorf("debuginfod-find fetched %d bytes, not the uploaded %d", len(got), len(want))
	}
	if _, err := run("debuginfo", strings.Repeat("ab", 20)); err == nil {
		t.Error("debuginfod-find found an unknown build ID")
	}
	os.WriteFile(headers, []byte("Authorization: Bearer "+viewerToken+"\n"), 0o600)
	if _, err := run("debuginfo", b.id); err == nil {
		t.Error("debuginfod-find fetched with a viewer's token")
	}
}

// brokenReads is a blob store whose debug files open but cannot be read,
// as a disk or an object store failing under a download.
type brokenReads struct {
	corepipe.BlobStore
	broken *atomic.Bool
}

func (b brokenReads) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := b.BlobStore.Get(ctx, key)
	if err != nil || !b.broken.Load() || strings.HasSuffix(key, ".json") {
		return rc, err
	}
	return struct {
		io.Reader
		io.Closer
	}{iotest.ErrReader(errors.New("read /var/lib/blobs/x: input/output error")), rc}, nil
}

// TestDebuginfodReadFailure: a debug file that cannot be read is a JSON
// error that says nothing of the store, without the debuginfod headers: a
// Content-Length of the file under a short error body broke the answer.
func TestDebuginfodReadFailure(t *testing.T) {
	broken := &atomic.Bool{}
	e := newEnvWith(t, func(c *Config) { c.Blobs = brokenReads{c.Blobs, broken} })
	b := newDebugBuild(t)
	if resp, body := e.upload("", b.id, b.debug); resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %s: %s", resp.Status, body)
	}
	broken.Store(true)
	for _, path := range []string{"/buildid/" + b.id + "/debuginfo", "/buildid/" + b.id + "/section/.debug_info"} {
		resp, body := e.get(path)
		wantError(t, resp, body, http.StatusInternalServerError, "")
		if strings.Contains(string(body), "/var/lib") || resp.Header.Get("X-DEBUGINFOD-SIZE") != "" {
			t.Errorf("%s: answer %v %s: want a bare error", path, resp.Header, body)
		}
	}
}
