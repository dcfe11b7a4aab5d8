package hostfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func writeString(s string) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	}
}

func TestReplace(t *testing.T) {
	dir := t.TempDir()
	name, tmp := filepath.Join(dir, "f"), filepath.Join(dir, "f.tmp")
	if err := os.WriteFile(name, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A stale temp file, even a link planted there, is replaced, not
	// written through.
	target := filepath.Join(dir, "target")
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	for _, durable := range []bool{true, false} {
		if err := Replace(name, tmp, 0o640, durable, writeString("new")); err != nil {
			t.Fatalf("durable %v: %v", durable, err)
		}
		if b, _ := os.ReadFile(name); string(b) != "new" {
			t.Errorf("durable %v: %s holds %q", durable, name, b)
		}
	}
	if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, %v; want 0640", fi.Mode(), err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link's target was written: %v", err)
	}

	// A failed write leaves the old file and no temp file.
	failed := errors.New("disk full")
	err := Replace(name, tmp, 0o600, true, func(w io.Writer) error {
		io.WriteString(w, "half")
		return failed
	})
	if !errors.Is(err, failed) {
		t.Errorf("Replace = %v, want the write's error", err)
	}
	if b, _ := os.ReadFile(name); string(b) != "new" {
		t.Errorf("after a failed write %s holds %q", name, b)
	}
	if _, err := os.Lstat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file left behind: %v", err)
	}
}
