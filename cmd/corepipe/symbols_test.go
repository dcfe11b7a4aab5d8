package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

// parkedCrasher is the end-to-end tests' nil dereference three calls deep
// with goroutines parked in the common ways, so that a report without DWARF
// (no goroutines) and one with it differ in everything that matters.
func parkedCrasher(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../../e2e/testdata/nilderef/main.go")
	if err != nil {
		t.Fatal(err)
	}
	return string(src)
}

// splitBuild builds the crasher and splits it as the README's recipe does:
// the debug file to upload and the stripped binary to ship.
func splitBuild(t *testing.T) (exe, debug, shipped string) {
	t.Helper()
	exe = crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": parkedCrasher(t)}})
	shipped = filepath.Join(t.TempDir(), "crasher")
	return exe, crashtest.SplitDebug(t, exe, shipped), shipped
}

func gnuID(t *testing.T, path string) string {
	t.Helper()
	id := crashtest.BuildIDs(t, path).GNU
	if id == "" {
		t.Fatalf("%s: no GNU build ID", path)
	}
	return id
}

// TestAnalyzeStrippedWithDebugDir: the core of an objcopy-stripped binary,
// dumped by the kernel, is analysed in full once delve is given the debug
// file in a .build-id tree, and every goroutine matches the runtime's own
// traceback.
func TestAnalyzeStrippedWithDebugDir(t *testing.T) {
	_, debug, shipped := splitBuild(t)
	core, res := crashtest.Core(t, shipped, nil)

	stdout, stderr, status := runMain(t, nil, "analyze", core, "--exe", shipped)
	var degraded corepipe.Report
	if err := json.Unmarshal([]byte(stdout), &degraded); status != 0 || err != nil {
		t.Fatalf("analyze without debug info: status %d, %v\n%s", status, err, stderr)
	}
	if len(degraded.Goroutines) > 0 || len(degraded.Threads) == 0 {
		t.Fatalf("without debug info: %d goroutines and %d threads, want thread stacks only", len(degraded.Goroutines), len(degraded.Threads))
	}
	dir := t.TempDir()
	id := gnuID(t, shipped)
	dst := filepath.Join(dir, ".build-id", id[:2], id[2:]+".debug")
	os.MkdirAll(filepath.Dir(dst), 0o755)
	b, err := os.ReadFile(debug)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status = runMain(t, nil, "analyze", core, "--exe", shipped, "--debug-dir", dir)
	if status != 0 {
		t.Fatalf("analyze --debug-dir: status %d\n%s", status, stderr)
	}
	var r corepipe.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("no report: %v\n%s", err, stdout)
	}
	dump, err := gotraceback.Parse(res.Stderr)
	if err != nil {
		t.Fatalf("parse the runtime's traceback: %v\n%s", err, res.Stderr)
	}
	for _, m := range gotraceback.Compare(&r, dump) {
		t.Errorf("report differs from the runtime's traceback: %s", m)
	}
	if len(r.Goroutines) < 7 || !strings.Contains(r.Title, "main.(*server).retries") {
		t.Errorf("%d goroutines, title %q", len(r.Goroutines), r.Title)
	}
}

func TestDebuginfodEnv(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want []string
	}{
		{[]string{"HOME=/root"}, []string{"HOME=/root", "DEBUGINFOD_URLS=https://crashes.example.com"}},
		{[]string{"DEBUGINFOD_URLS=https://debuginfod.debian.net", "HOME=/root"},
			[]string{"HOME=/root", "DEBUGINFOD_URLS=https://crashes.example.com https://debuginfod.debian.net"}},
		{[]string{"DEBUGINFOD_URLS="}, []string{"DEBUGINFOD_URLS=https://crashes.example.com"}},
	} {
		if got := debuginfodEnv(tc.env, "https://crashes.example.com/"); !slices.Equal(got, tc.want) {
			t.Errorf("debuginfodEnv(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
}
