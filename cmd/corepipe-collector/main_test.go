package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe/collector/spool"
)

func TestLogLine(t *testing.T) {
	spoolDir := t.TempDir()
	logLine(spoolDir, 0, "crash captured", "comm", "evil\nlevel=ERROR msg=forged")
	b, err := os.ReadFile(filepath.Join(spoolDir, spool.LogFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != 1 {
		t.Errorf("one record took %d lines:\n%s", n, b)
	}

	// Over the cap, the log moves aside instead of growing.
	os.WriteFile(filepath.Join(spoolDir, spool.LogFile), bytes.Repeat([]byte("x"), maxLogSize+1), 0o600)
	logLine(spoolDir, 0, "next")
	if fi, _ := os.Stat(filepath.Join(spoolDir, spool.LogFile)); fi.Size() > 200 {
		t.Errorf("log not rotated: %d bytes", fi.Size())
	}
	if _, err := os.Stat(filepath.Join(spoolDir, spool.LogFile+".1")); err != nil {
		t.Errorf("previous log not kept: %v", err)
	}

	// A symlinked spool or log is never written through.
	target := t.TempDir()
	link := filepath.Join(t.TempDir(), "spool")
	os.Symlink(target, link)
	logLine(link, 0, "x")
	os.Symlink(filepath.Join(target, "victim"), filepath.Join(target, spool.LogFile))
	logLine(target, 0, "x")
	if _, err := os.Stat(filepath.Join(target, "victim")); err == nil {
		t.Error("wrote through a symlinked log")
	}
}

// TestRunBinary runs the command as the kernel would, with a core on stdin
// and no /proc entry for the pid, and checks it commits an entry and exits 0.
func TestRunBinary(t *testing.T) {
	if os.Getenv("COLLECTOR_MAIN") == "1" {
		os.Exit(run(os.Args[slices.Index(os.Args, "--")+1:]))
	}
	spoolDir := filepath.Join(t.TempDir(), "spool")
	args := append([]string{"-test.run=TestRunBinary", "--", "-spool", spoolDir}, strings.Fields("999999999 1 1 11 1700000000 18446744073709551615 0 0 1 1")...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "COLLECTOR_MAIN=1")
	cmd.Stdin = strings.NewReader("not really a core")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("collector: %v\n%s", err, out)
	}
	entries, err := spool.Spool{Dir: spoolDir}.Entries()
	if err != nil || len(entries) != 1 || entries[0].CorePath() == "" {
		t.Fatalf("entries %v, %v", entries, err)
	}
	log, _ := os.ReadFile(filepath.Join(spoolDir, spool.LogFile))
	if !bytes.Contains(log, []byte(entries[0].ID)) {
		t.Errorf("collector.log does not name the entry:\n%s", log)
	}
}
