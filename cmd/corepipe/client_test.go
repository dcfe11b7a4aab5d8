package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/apitest"
)

const cliToken = "cli-debugger-token-0123"

// cliServer serves two crashes, the newer with its core and executable,
// behind a debugger token that the commands read from COREPIPE_TOKEN.
func cliServer(t *testing.T) (url string, newer, older *corepipe.Report, core []byte) {
	t.Helper()
	srv := apitest.Start(t, cliToken+" debugger")
	t.Setenv("COREPIPE_TOKEN", cliToken)
	core = bytes.Repeat([]byte{0x7f, 'E', 'L', 'F'}, 50_000)
	at := time.Now().UTC().Truncate(time.Millisecond)
	var rs []*corepipe.Report
	for i, node := range []string{"node-old", "node-new"} {
		r := &corepipe.Report{
			Schema: corepipe.ReportSchema, ID: corepipe.NewID(at.Add(time.Duration(i) * time.Minute)), Status: corepipe.StatusAnalyzed,
			CapturedAt: at.Add(time.Duration(i) * time.Minute), Node: node,
			Process:   corepipe.Process{PID: 42, Exe: "/srv/bin/payments"},
			Container: &corepipe.Container{Namespace: "prod", Pod: "payments-" + node},
			Title:     "index out of range in main.lookup on " + node,
			Signature: "gocrash/v1:cafe", CrashingGoroutine: 1,
			Goroutines: []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{
				{Function: "main.lookup", File: "/src/payments/main.go", Line: 31}}}},
		}
		if i == 1 {
			srv.Add(t, r, core, []byte("\x7fELF payments"), "beef")
		} else {
			srv.Add(t, r, nil, nil, "")
		}
		rs = append(rs, r)
	}
	return srv.URL, rs[1], rs[0], core
}

func TestLs(t *testing.T) {
	url, newer, older, _ := cliServer(t)
	var out bytes.Buffer
	if err := runLs(context.Background(), &out, []string{"--server", url}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], newer.ID) || !strings.HasPrefix(lines[2], older.ID) {
		t.Fatalf("ls:\n%s", out.String())
	}
	for _, want := range []string{"prod/payments-node-new", "analyzed", newer.Title} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("ls line %q lacks %q", lines[1], want)
		}
	}

	out.Reset()
	t.Setenv("COREPIPE_SERVER", url)
	if err := runLs(context.Background(), &out, []string{"--node", "node-old", "--exe", "payments", "--since", "1h", "--json"}); err != nil {
		t.Fatal(err)
	}
	var r corepipe.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.ID != older.ID || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("ls --node --json: %s (%v)", out.String(), err)
	}

	for _, args := range [][]string{{"--status", "exploded"}, {"--since", "whenever"}, {"--limit", "0"}, {"extra"}} {
		if err := runLs(context.Background(), &out, args); err == nil {
			t.Errorf("ls %v: no error", args)
		}
	}
	t.Setenv("COREPIPE_TOKEN", "")
	if err := runLs(context.Background(), &out, nil); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("ls without a token: %v", err)
	}
}

func TestShow(t *testing.T) {
	url, newer, _, _ := cliServer(t)
	var out bytes.Buffer
	if err := runShow(context.Background(), &out, []string{"--server", url, newer.ID}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{newer.Title, "main.lookup", "/src/payments/main.go:31", "prod/payments-node-new"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	// Flags after the ID work too.
	if err := runShow(context.Background(), &out, []string{newer.ID, "--server", url, "--json"}); err != nil {
		t.Fatal(err)
	}
	var r corepipe.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.ID != newer.ID || len(r.Goroutines) != 1 {
		t.Errorf("show --json: %v, %+v", err, r)
	}
	for _, args := range [][]string{{"--server", url}, {"--server", url, "../../etc"}, {"--server", url, newer.ID, newer.ID}} {
		if err := runShow(context.Background(), &out, args); err == nil {
			t.Errorf("show %v: no error", args)
		}
	}
}

func TestFetchAndDebug(t *testing.T) {
	url, newer, older, core := cliServer(t)
	dir := filepath.Join(t.TempDir(), "out")
	var out bytes.Buffer
	if err := runFetch(context.Background(), &out, []string{"--server", url, "--dir", dir, newer.ID}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "core-"+newer.ID)); err != nil || !bytes.Equal(got, core) {
		t.Errorf("fetched core: %d bytes, %v", len(got), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "payments")); err != nil {
		t.Errorf("fetched executable: %v", err)
	}
	if err := runFetch(context.Background(), &out, []string{"--server", url, "--dir", t.TempDir(), older.ID}); err == nil || !strings.Contains(err.Error(), "no core") {
		t.Errorf("fetch of a crash without a core: %v", err)
	}

	// A stand-in dlv on PATH: debug must find it, fetch, and hand over.
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "dlv"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	var got []string
	record := func(path string, argv, env []string) error {
		if path != filepath.Join(bin, "dlv") {
			t.Errorf("exec %s, want the dlv on PATH", path)
		}
		got = argv
		return nil
	}
	debugDir := t.TempDir()
	if err := runDebug(context.Background(), &out, []string{"--server", url, "--dir", debugDir, newer.ID}, record); err != nil {
		t.Fatal(err)
	}
	want := []string{"dlv", "core", filepath.Join(debugDir, "payments"), filepath.Join(debugDir, "core-"+newer.ID)}
	if !slices.Equal(got, want) {
		t.Errorf("exec %q, want %q", got, want)
	}
	if b, err := os.ReadFile(want[3]); err != nil || !bytes.Equal(b, core) {
		t.Errorf("core for dlv: %d bytes, %v", len(b), err)
	}

	t.Setenv("PATH", t.TempDir())
	empty := filepath.Join(t.TempDir(), "never")
	err := runDebug(context.Background(), &out, []string{"--server", url, "--dir", empty, newer.ID}, record)
	if err == nil || !strings.Contains(err.Error(), "dlv") || !strings.Contains(err.Error(), "PATH") {
		t.Errorf("debug without dlv: %v", err)
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Error("debug without dlv downloaded the core anyway")
	}
}

// TestDebugLogReport: a crash reported from a log has no core; debug and
// fetch say so in one line, with why, instead of a download error.
func TestDebugLogReport(t *testing.T) {
	url, _, older, _ := cliServer(t)
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "dlv"), []byte("#!/bin/sh\n"), 0o755)
	t.Setenv("PATH", bin)
	err := runDebug(context.Background(), io.Discard, []string{"--server", url, older.ID}, func(string, []string, []string) error {
		t.Error("dlv started for a crash without a core")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "has no core to debug") || strings.Contains(err.Error(), "\n") {
		t.Errorf("debug of a crash without a core: %v", err)
	}
}

// TestCompleteCrashIDs: TAB after show, fetch or debug offers the API's
// recent crashes, titled, and only those with the prefix typed.
func TestCompleteCrashIDs(t *testing.T) {
	url, newer, older, _ := cliServer(t)
	t.Setenv("COREPIPE_SERVER", url)
	for _, cmd := range []string{"show", "fetch", "debug"} {
		var out bytes.Buffer
		if err := runCLI(context.Background(), &out, nil, "__complete", cmd, ""); err != nil {
			t.Fatal(err)
		}
		for _, r := range []*corepipe.Report{newer, older} {
			if !strings.Contains(out.String(), r.ID+"\t"+r.Title+"\n") {
				t.Errorf("completing %s does not offer %s:\n%s", cmd, r.ID, out.String())
			}
		}
	}
	// Only what starts with what was typed; the IDs are time-ordered, so
	// the newer's last character is where the two differ.
	var out bytes.Buffer
	if err := runCLI(context.Background(), &out, nil, "__complete", "show", "--server", url, newer.ID); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), newer.ID) || strings.Contains(out.String(), older.ID) {
		t.Errorf("completing %s:\n%s", newer.ID, out.String())
	}
}

// TestCrashTableHeadline: ls names a crash the way the UI and Slack do
// (Report.Headline: the last entry of a panic chain, not the first), and a
// long title is cut on a character, never inside one.
func TestCrashTableHeadline(t *testing.T) {
	var out bytes.Buffer
	chain := &corepipe.Report{ID: "01J00000000000000000000001", Status: corepipe.StatusAnalyzed,
		Panic: &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: "first [recovered]\npanic: second"}}
	long := &corepipe.Report{ID: "01J00000000000000000000002", Status: corepipe.StatusAnalyzed,
		Title: strings.Repeat("é", 200)}
	if err := writeCrashTable(&out, []*corepipe.Report{chain, long}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[1], chain.Headline()) || strings.Contains(lines[1], "first") {
		t.Errorf("ls line %q, want the headline %q", lines[1], chain.Headline())
	}
	if !utf8.ValidString(lines[2]) || !strings.HasSuffix(lines[2], strings.Repeat("é", maxTitle-1)+"…") {
		t.Errorf("long title line %q", lines[2])
	}
}
