package symbols_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/symbols"
)

// bigBuild is corepipe itself, unstripped: tens of MiB, most of it DWARF.
func bigBuild(b *testing.B) (path, gnu string) {
	b.Helper()
	path = filepath.Join(b.TempDir(), "corepipe")
	if out, err := exec.Command("go", "build", "-o", path, "../cmd/corepipe").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	ids := crashtest.BuildIDs(b, path)
	if ids.GNU == "" {
		b.Fatal("no GNU build ID")
	}
	return path, ids.GNU
}

// BenchmarkInspect checks an upload: what it allocates is the section
// table and one unit header, whatever the DWARF's size.
func BenchmarkInspect(b *testing.B) {
	path, _ := bigBuild(b)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := symbols.Inspect(f, st.Size()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.Size()), "file-bytes")
}

// BenchmarkPut stores an upload in a filesystem store: spooled, checked and
// stored, streaming all the way.
func BenchmarkPut(b *testing.B) {
	path, gnu := bigBuild(b)
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		blobs, err := fs.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		s := &symbols.Store{Blobs: blobs, TempDir: b.TempDir()}
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, _, err := s.Put(context.Background(), gnu, "corepipe", f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
