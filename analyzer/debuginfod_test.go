package analyzer

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/debuginfodtest"
	"github.com/corepipe/corepipe/symbols"
)

func TestParseDebuginfodURLs(t *testing.T) {
	got, err := ParseDebuginfodURLs(nil, " https://debuginfod.debian.net/  http://127.0.0.1:8002 ")
	if err != nil || strings.Join(got, " ") != "https://debuginfod.debian.net http://127.0.0.1:8002" {
		t.Errorf("from DEBUGINFOD_URLS: %q, %v", got, err)
	}
	if got, err := ParseDebuginfodURLs([]string{"http://a:1"}, "http://b:2"); err != nil || len(got) != 1 || got[0] != "http://a:1" {
		t.Errorf("flags win over DEBUGINFOD_URLS: %q, %v", got, err)
	}
	for _, bad := range []string{"ftp://x", "debuginfod.debian.net", "http://", "http://h/?q=1"} {
		if _, err := ParseDebuginfodURLs([]string{bad}, ""); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestDebuginfodFromElfutils has a stripped executable's analysis fetch
// its debug file from elfutils' own debuginfod, after a server that
// refuses connections and one that never answers; then from its cache
// once the server is gone. A file over the size limit, and a server that
// answers with a file without DWARF, leave the symbols missing.
func TestDebuginfodFromElfutils(t *testing.T) {
	if !debuginfodtest.InNetns(t) {
		return
	}
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": "package main\n\nfunc main() { println(\"hello\") }\n"}})
	served := t.TempDir()
	shipped := filepath.Join(t.TempDir(), "prog")
	// debuginfod serves what it finds in the directory it scans.
	if err := os.Rename(crashtest.SplitDebug(t, exe, shipped), filepath.Join(served, "prog.debug")); err != nil {
		t.Fatal(err)
	}
	ids, err := readIDs(shipped)
	if err != nil || ids.GNU == "" {
		t.Fatalf("no GNU build ID: %v", err)
	}
	url, stop := debuginfodtest.Start(t, served, 8002, ids.GNU)

	// A server that takes connections and never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	// A server that answers with the stripped file: the right build ID,
	// no DWARF.
	wrong := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, shipped) })}
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go wrong.Serve(wl)
	defer wrong.Close()

	blobs, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	analyse := func(d *Debuginfod) (lacks, path string) {
		t.Helper()
		dir := t.TempDir()
		a := New(Config{Blobs: blobs, Debuginfod: d})
		lacks, err := a.fetchDebugInfo(context.Background(), shipped, dir)
		if err != nil {
			t.Fatal(err)
		}
		return lacks, filepath.Join(dir, DebugDir, ".build-id", ids.GNU[:2], ids.GNU[2:]+".debug")
	}
	cache := t.TempDir()
	d := &Debuginfod{URLs: []string{"http://127.0.0.1:1", "http://" + hang.Addr().String(), url}, Timeout: time.Second, CacheDir: cache}
	lacks, path := analyse(d)
	if lacks != "" {
		t.Fatalf("lacks %q with elfutils serving the debug file", lacks)
	}
	if ok, err := symbols.HasDWARF(path); !ok || err != nil {
		t.Fatalf("the analysis's debug file %s has no DWARF: %v", path, err)
	}

	want := "symbols missing: gnu:" + ids.GNU
	for name, tc := range map[string]struct {
		d   *Debuginfod
		err string
	}{
		"over the size limit": {&Debuginfod{URLs: []string{url}, MaxSize: 4096, CacheDir: t.TempDir()}, "over the limit of 4096"},
		"no DWARF":            {&Debuginfod{URLs: []string{"http://" + wl.Addr().String()}, CacheDir: t.TempDir()}, "has no DWARF"},
	} {
		if lacks, _ := analyse(tc.d); lacks != want {
			t.Errorf("%s: lacks %q, want %q", name, lacks, want)
		}
		if _, err := tc.d.Fetch(context.Background(), ids.GNU, filepath.Join(t.TempDir(), "debug")); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", name, err, tc.err)
		}
		if entries, _ := os.ReadDir(filepath.Join(tc.d.CacheDir, ".build-id", ids.GNU[:2])); len(entries) > 0 {
			t.Errorf("%s: the refused file was cached", name)
		}
	}
	stop()
	if lacks, path := analyse(d); lacks != "" {
		t.Errorf("with the server gone, lacks %q: the cache by build ID was not used", lacks)
	} else if _, err := os.Stat(path); err != nil {
		t.Error(err)
	}
}

// TestDebuginfodCacheBound: past its bound the cache loses its least
// recently used files, never the one just fetched, and the leftovers of
// downloads that died; a cache hit counts as a use.
func TestDebuginfodCacheBound(t *testing.T) {
	cache := t.TempDir()
	now := time.Now()
	put := func(name string, size int, age time.Duration) string {
		t.Helper()
		path := filepath.Join(cache, ".build-id", name[:2], name[2:])
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return path
	}
	hit := strings.Repeat("a1", 20)
	oldest := put("b1"+strings.Repeat("0", 38)+".debug", 100, 4*time.Hour)
	older := put("c1"+strings.Repeat("0", 38)+".debug", 100, 3*time.Hour)
	recent := put("d1"+strings.Repeat("0", 38)+".debug", 100, time.Hour)
	used := put(hit+".debug", 100, 5*time.Hour)
	fetched := put("e1"+strings.Repeat("0", 38)+".debug", 100, 6*time.Hour)
	dead := put("f1/.fetch-123", 100, 2*time.Hour)
	running := put("f1/.fetch-456", 100, time.Minute)

	d := &Debuginfod{CacheDir: cache, CacheSize: 300}
	// A hit, with no server to ask: the oldest file becomes the newest.
	if ok, err := d.Fetch(context.Background(), hit, filepath.Join(t.TempDir(), "hit.debug")); !ok || err != nil {
		t.Fatalf("cache hit: %v, %v", ok, err)
	}
	d.prune(fetched)
	for path, want := range map[string]bool{oldest: false, older: false, recent: true, used: true, fetched: true, dead: false, running: true} {
		if _, err := os.Stat(path); (err == nil) != want {
			t.Errorf("%s: kept %v, want %v", path[len(cache):], err == nil, want)
		}
	}
}
