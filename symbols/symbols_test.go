package symbols_test

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/symbols"
)

const prog = `package main

import "fmt"

func main() { fmt.Println("hello") }
`

func build(t *testing.T, flags ...string) string {
	t.Helper()
	return crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": prog}, Flags: flags})
}

// split is the recipe: the debug file and the shipped binary from one build.
func split(t *testing.T, exe string) (debug, shipped string) {
	t.Helper()
	shipped = exe + ".shipped"
	return crashtest.SplitDebug(t, exe, shipped), shipped
}

func newStore(t *testing.T) *symbols.Store {
	t.Helper()
	b, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &symbols.Store{Blobs: b, TempDir: t.TempDir()}
}

func put(t *testing.T, s *symbols.Store, id, path string) (*symbols.Meta, bool, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return s.Put(context.Background(), id, filepath.Base(path), f)
}

func TestSplitKeepsBuildIDs(t *testing.T) {
	exe := build(t)
	debug, shipped := split(t, exe)
	want := crashtest.BuildIDs(t, exe)
	if want.GNU == "" || want.Go == "" {
		t.Fatalf("go build gave build IDs %+v: want both", want)
	}
	for _, p := range []string{debug, shipped} {
		if got := crashtest.BuildIDs(t, p); got != want {
			t.Errorf("%s: build IDs %+v, want %+v", filepath.Base(p), got, want)
		}
	}
}

func TestPutDebugFileAndLookUpByEitherID(t *testing.T) {
	exe := build(t)
	debug, _ := split(t, exe)
	want := crashtest.BuildIDs(t, exe)
	s := newStore(t)
	m, stored, err := put(t, s, want.GNU, debug)
	if err != nil || !stored {
		t.Fatalf("Put: stored %v, %v", stored, err)
	}
	if m.Executable {
		t.Error("an --only-keep-debug file is marked executable")
	}
	st, _ := os.Stat(debug)
	if m.Size != st.Size() || len(m.SHA256) != 64 || m.Key != corepipe.DebugInfoKey(want.GNU) {
		t.Errorf("meta %+v", m)
	}
	for _, id := range []string{want.GNU, want.Go} {
		got, err := s.Lookup(context.Background(), id)
		if err != nil {
			t.Fatalf("Lookup %s: %v", id, err)
		}
		if got.Key != m.Key || got.SHA256 != m.SHA256 {
			t.Errorf("Lookup %s: %+v, want %+v", id, got, m)
		}
	}
	rc, err := s.Open(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	orig, _ := os.ReadFile(debug)
	if !bytes.Equal(buf.Bytes(), orig) {
		t.Error("the stored file differs from the upload")
	}
	var listed []*symbols.Meta
	if err := s.List(context.Background(), 0, func(m *symbols.Meta) error { listed = append(listed, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 {
		t.Errorf("List: %d entries, want 1 (the Go ID's metadata names the same file)", len(listed))
	}
}

func TestPutUnstrippedBinaryWithBuildInfo(t *testing.T) {
	exe := build(t)
	s := newStore(t)
	m, _, err := put(t, s, crashtest.BuildIDs(t, exe).GNU, exe)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Executable || m.Module != "crasher" || m.GoVersion == "" || m.GOARCH == "" {
		t.Errorf("meta of an unstripped binary: %+v", m)
	}
}

func TestPutIsIdempotent(t *testing.T) {
	exe := build(t)
	debug, _ := split(t, exe)
	id := crashtest.BuildIDs(t, exe).GNU
	s := newStore(t)
	first, _, err := put(t, s, id, debug)
	if err != nil {
		t.Fatal(err)
	}
	// The unstripped binary has the same IDs: the stored file stays.
	again, stored, err := put(t, s, id, exe)
	if err != nil || stored {
		t.Fatalf("second Put: stored %v, %v", stored, err)
	}
	if again.SHA256 != first.SHA256 {
		t.Errorf("second Put replaced the file: %s, want %s", again.SHA256, first.SHA256)
	}
}

func TestPutRefusesWithoutDWARF(t *testing.T) {
	for name, path := range map[string]string{
		"-s -w":     build(t, "-ldflags=-s -w"),
		"strip-all": func() string { _, shipped := split(t, build(t)); return shipped }(),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := put(t, newStore(t), crashtest.BuildIDs(t, path).GNU, path)
			if !errors.Is(err, corepipe.ErrInvalid) || !errors.Is(err, symbols.ErrNoDWARF) {
				t.Fatalf("Put of a file without DWARF: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestBuiltStripped(t *testing.T) {
	if !symbols.BuiltStripped(build(t, "-ldflags=-s -w")) {
		t.Error("a -s -w build is not recognised")
	}
	if symbols.BuiltStripped(build(t)) {
		t.Error("a plain build is taken for -s -w")
	}
}

func TestPutRefusesOtherBuildID(t *testing.T) {
	exe := build(t)
	debug, _ := split(t, exe)
	_, _, err := put(t, newStore(t), strings.Repeat("ab", 20), debug)
	if !errors.Is(err, corepipe.ErrInvalid) || !strings.Contains(err.Error(), "gnu:"+crashtest.BuildIDs(t, exe).GNU) {
		t.Fatalf("Put under another build ID: %v", err)
	}
}

// TestPutRefusesHugeSectionCheaply: a .debug_info that claims a terabyte is
// refused from its header, before anything of it is read.
func TestPutRefusesHugeSectionCheaply(t *testing.T) {
	exe := build(t)
	debug, _ := split(t, exe)
	data, err := os.ReadFile(debug)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	shoff := binary.LittleEndian.Uint64(data[40:])
	found := false
	for i, s := range ef.Sections {
		if s.Name != ".debug_info" {
			continue
		}
		// Elf64_Shdr: sh_flags at 8, sh_size at 32.
		hdr := data[shoff+uint64(i)*64:]
		binary.LittleEndian.PutUint64(hdr[8:], binary.LittleEndian.Uint64(hdr[8:])&^uint64(elf.SHF_COMPRESSED))
		binary.LittleEndian.PutUint64(hdr[32:], 1<<40)
		found = true
	}
	if !found {
		t.Fatal("no .debug_info in the debug file")
	}
	forged := filepath.Join(t.TempDir(), "forged.debug")
	if err := os.WriteFile(forged, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = put(t, newStore(t), crashtest.BuildIDs(t, exe).GNU, forged)
	if !errors.Is(err, corepipe.ErrInvalid) || !strings.Contains(err.Error(), "past the end") {
		t.Fatalf("Put of a file claiming a 1 TiB section: %v", err)
	}
}

func TestPutRefusesOverLimit(t *testing.T) {
	exe := build(t)
	s := newStore(t)
	s.MaxSize = 1 << 10
	if _, _, err := put(t, s, crashtest.BuildIDs(t, exe).GNU, exe); !errors.Is(err, corepipe.ErrInvalid) {
		t.Fatalf("Put over the limit: %v", err)
	}
}

func TestPutRefusesNotELF(t *testing.T) {
	path := filepath.Join(t.TempDir(), "text")
	os.WriteFile(path, []byte(strings.Repeat("not an ELF file\n", 100)), 0o644)
	if _, _, err := put(t, newStore(t), "abcd", path); !errors.Is(err, corepipe.ErrInvalid) {
		t.Fatalf("Put of text: %v", err)
	}
}

func TestHasDWARF(t *testing.T) {
	exe := build(t)
	_, shipped := split(t, exe)
	if ok, err := symbols.HasDWARF(exe); !ok || err != nil {
		t.Errorf("HasDWARF(unstripped) = %v, %v", ok, err)
	}
	if ok, err := symbols.HasDWARF(shipped); ok || err != nil {
		t.Errorf("HasDWARF(stripped) = %v, %v", ok, err)
	}
}
