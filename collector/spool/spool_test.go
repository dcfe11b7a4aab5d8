package spool

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

// writeEntry makes a spool entry by hand, as a collector would leave it.
func writeEntry(t *testing.T, dir, name, id string, files ...string) {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(corepipe.Crash{Schema: corepipe.ManifestSchema, ID: id})
	if err := os.WriteFile(filepath.Join(d, ManifestFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(d, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSpoolEntries(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	older, newer, writing := corepipe.NewID(t0), corepipe.NewID(t0.Add(time.Second)), corepipe.NewID(t0.Add(2*time.Second))
	writeEntry(t, dir, newer, newer, CoreFile)
	writeEntry(t, dir, older, older, CoreFile, ExecutableFile)
	writeEntry(t, dir, writing+TmpSuffix, writing, CoreFile)
	// Junk the agent must never pick up.
	writeEntry(t, dir, "not-an-id", "not-an-id")
	os.Mkdir(filepath.Join(dir, ExecutablesDir), 0o700)
	os.WriteFile(filepath.Join(dir, corepipe.NewID(t0)), []byte("a file"), 0o600)
	elsewhere := t.TempDir()
	writeEntry(t, elsewhere, "x", "x")
	link := corepipe.NewID(t0.Add(3 * time.Second))
	if err := os.Symlink(filepath.Join(elsewhere, "x"), filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}

	s := Spool{Dir: dir}
	entries, err := s.Entries()
	if !errors.Is(err, ErrSymlink) {
		t.Errorf("Entries error = %v, want ErrSymlink for %s", err, link)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.ID)
	}
	if want := []string{older, newer}; !slices.Equal(ids, want) {
		t.Fatalf("Entries = %v, want %v (oldest first, committed only)", ids, want)
	}

	e := entries[0]
	c, err := e.Manifest()
	if err != nil || c.ID != older {
		t.Fatalf("Manifest = %+v, %v", c, err)
	}
	if e.CorePath() != filepath.Join(dir, older, CoreFile) || e.ExecutablePath() == "" {
		t.Errorf("CorePath %q, ExecutablePath %q", e.CorePath(), e.ExecutablePath())
	}
	if entries[1].ExecutablePath() != "" {
		t.Errorf("entry without executable: ExecutablePath = %q", entries[1].ExecutablePath())
	}
	if err := e.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(e.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed entry still there: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(elsewhere, "x", ManifestFile)); err != nil {
		t.Errorf("symlink target touched: %v", err)
	}
}

func TestEntryManifestChecks(t *testing.T) {
	dir := t.TempDir()
	id, other := corepipe.NewID(time.Now()), corepipe.NewID(time.Now())
	writeEntry(t, dir, id, other)
	if _, err := (Entry{ID: id, Dir: filepath.Join(dir, id)}).Manifest(); err == nil {
		t.Error("manifest of another crash accepted")
	}

	id2 := corepipe.NewID(time.Now())
	d := filepath.Join(dir, id2)
	os.Mkdir(d, 0o700)
	target := filepath.Join(t.TempDir(), "m.json")
	b, _ := json.Marshal(corepipe.Crash{ID: id2})
	os.WriteFile(target, b, 0o600)
	os.Symlink(target, filepath.Join(d, ManifestFile))
	os.Symlink(target, filepath.Join(d, CoreFile))
	e := Entry{ID: id2, Dir: d}
	if _, err := e.Manifest(); err == nil {
		t.Error("symlinked manifest followed")
	}
	if e.CorePath() != "" {
		t.Error("symlinked core reported")
	}
}

func TestExecutableMarkers(t *testing.T) {
	s := Spool{Dir: t.TempDir()}
	if _, ok := s.ExecutableStored("abc"); ok {
		t.Fatal("marker before marking")
	}
	if _, ok := s.ExecutableStored(""); ok {
		t.Fatal("marker of the empty ID")
	}
	m := StoredExe{SHA256: strings.Repeat("0f", 32), Size: 42}
	for range 2 {
		if err := s.MarkExecutableStored("../../go/build/id", m); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok := s.ExecutableStored("../../go/build/id"); !ok || got != m {
		t.Errorf("marker = %+v, %v after marking %+v", got, ok, m)
	}
	// The content is replaced, not appended to.
	m2 := StoredExe{SHA256: strings.Repeat("1e", 32), Size: 7}
	if err := s.MarkExecutableStored("../../go/build/id", m2); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ExecutableStored("../../go/build/id"); got != m2 {
		t.Errorf("marker = %+v after re-marking %+v", got, m2)
	}
	if _, err := os.Lstat(filepath.Join(s.Dir, ExecutablesDir, corepipe.SafeName("../../go/build/id"))); err != nil {
		t.Errorf("marker not under executables/: %v", err)
	}
	if err := s.MarkExecutableStored("", m); err == nil {
		t.Error("empty content id marked")
	}
	// An older agent's empty marker: stored, content unknown.
	os.WriteFile(filepath.Join(s.Dir, ExecutablesDir, "old"), nil, 0o600)
	if got, ok := s.ExecutableStored("old"); !ok || got != (StoredExe{}) {
		t.Errorf("empty marker = %+v, %v", got, ok)
	}
}

func TestCleanStaleAndUsage(t *testing.T) {
	dir := t.TempDir()
	s := Spool{Dir: dir}
	stale, fresh, done := corepipe.NewID(time.Now()), corepipe.NewID(time.Now()), corepipe.NewID(time.Now())
	writeEntry(t, dir, stale+TmpSuffix, stale, CoreFile)
	writeEntry(t, dir, fresh+TmpSuffix, fresh, CoreFile)
	writeEntry(t, dir, done, done, CoreFile)
	writeEntry(t, dir, "junk.tmp", "junk")
	old := time.Now().Add(-2 * time.Hour)
	for _, n := range []string{stale + TmpSuffix, done, "junk.tmp"} {
		os.Chtimes(filepath.Join(dir, n), old, old)
	}

	before, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.CleanStale(time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("CleanStale = %d, %v; want 1", n, err)
	}
	for name, want := range map[string]bool{stale + TmpSuffix: false, fresh + TmpSuffix: true, done: true, "junk.tmp": true} {
		if _, err := os.Lstat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s present = %v, want %v", name, err == nil, want)
		}
	}
	after, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, done, ManifestFile))
	if before-after != fi.Size()+1 {
		t.Errorf("Usage went from %d to %d after removing one manifest and a 1-byte core", before, after)
	}
}

// Keep renames the entry only while no collector counts the spool (see
// Entry.Keep): it waits for the ledger's lock, and keeps the entry once
// the lock is free.
func TestKeepWaitsForLedger(t *testing.T) {
	dir := t.TempDir()
	id := corepipe.NewID(time.Now())
	writeEntry(t, dir, id, id, CoreFile, ExecutableFile)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	lock, err := Lock(root, LockFile, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Entry{ID: id, Dir: filepath.Join(dir, id)}.Keep()
		done <- err
	}()
	// Less than ledgerWait, after which Keep goes ahead anyway.
	time.Sleep(ledgerWait / 4)
	if _, err := os.Stat(filepath.Join(dir, id+KeptSuffix)); err == nil {
		t.Error("kept while a collector holds the ledger's lock")
	}
	lock.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, id+KeptSuffix, CoreFile)); err != nil {
		t.Errorf("kept entry: %v", err)
	}
}
