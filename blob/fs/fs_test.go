package fs_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/internal/testkit/blobtest"
)

func open(t *testing.T, dir string) *fs.Store {
	t.Helper()
	s, err := fs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) corepipe.BlobStore { return open(t, t.TempDir()) })
}

func TestOpenCreatesRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "root")
	s := open(t, dir)
	if err := s.Put(t.Context(), "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "k")); err != nil || string(b) != "v" {
		t.Errorf("file on disk = %q, %v", b, err)
	}
}

// A crash mid-upload leaves a temp file behind; it must not show up as an
// object, and its name must not be usable as a key.
func TestTempFilesHidden(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.Put(t.Context(), "d/k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", ".corepipe-tmp-LEFTOVER"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := s.List(t.Context(), "", func(k string) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"d/k"}) {
		t.Errorf("List = %q, want only d/k", keys)
	}
	if _, err := s.Stat(t.Context(), "d/.corepipe-tmp-LEFTOVER"); err == nil {
		t.Errorf("Stat of a temp file name succeeded")
	}
}

// A symlink planted in the tree must not let a key read outside the root.
func TestSymlinkEscape(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(secret), filepath.Join(dir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir)
	for _, key := range []string{"link", "linkdir/secret"} {
		if rc, err := s.Get(t.Context(), key); err == nil {
			rc.Close()
			t.Errorf("Get(%q) through a symlink out of the root succeeded", key)
		}
	}
	if err := s.Put(t.Context(), "linkdir/planted", strings.NewReader("x"), 1); err == nil {
		t.Errorf("Put through a symlink out of the root succeeded")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(secret), "planted")); err == nil {
		t.Errorf("Put wrote outside the root")
	}
}

// A failed Put removes its temp file: a crash-looping uploader must not
// fill the disk with partial cores.
func TestFailedPutLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.Put(t.Context(), "d/k", strings.NewReader("short"), 10); err == nil {
		t.Fatal("short Put succeeded")
	}
	entries, err := os.ReadDir(filepath.Join(dir, "d"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("failed Put left %v", entries)
	}
}

// Cores and executables hold the crashed processes' secrets: no file or
// directory of the store may be readable by its group or anyone else.
func TestPrivatePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root")
	s := open(t, dir)
	if err := s.Put(t.Context(), "cores/2026/01/02/node/id/core.zst", strings.NewReader("core"), 4); err != nil {
		t.Fatal(err)
	}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s: mode %v, want no group or other bits", p, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A viewer is told that an object is missing, not where the store keeps it.
func TestErrorsNameNoPath(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	_, err := s.Get(t.Context(), "cores/secret-key")
	if !errors.Is(err, corepipe.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	if msg := corepipe.ErrorMessage(err); strings.Contains(msg, dir) || strings.Contains(msg, "secret-key") {
		t.Errorf("safe message %q names the path or the key", msg)
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "secret-key") {
		t.Errorf("detail %q does not name the path and the key for the log", err)
	}
}
