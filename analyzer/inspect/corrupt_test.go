package inspect

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/corefile"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// brokenDir is where -update-broken writes the heads of the broken cores:
// package corefile's pre-check tests and fuzz corpus.
const brokenDir = "../corefile/testdata/broken"

var updateBroken = flag.Bool("update-broken", false, "rewrite "+brokenDir+" from a fresh core (root)")

// brokenProgram is the program whose core the broken cores are made from:
// a few goroutines, so that a cut through its memory lands in stacks.
const brokenProgram = `package main

import "time"

//go:noinline
func work(ch chan int) { <-ch }

func main() {
	ch := make(chan int)
	for range 4 {
		go work(ch)
	}
	time.Sleep(20 * time.Millisecond)
	panic("broken on purpose")
}
`

// otherProgram builds into a different executable: the wrong one for the
// core of brokenProgram.
const otherProgram = `package main

func main() { panic("another program") }
`

// coreLayout is where the parts of a core are.
type coreLayout struct {
	phoff, phentsize       uint64
	notesOff, notesSize    uint64
	firstLoad, lastLoadEnd uint64
	loads                  []*elf.Prog
	loadIndex              []uint64 // of each load in the program headers
}

func layout(t *testing.T, core []byte) coreLayout {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(core))
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	l := coreLayout{phoff: le.Uint64(core[32:]), phentsize: uint64(le.Uint16(core[54:]))}
	for i, p := range f.Progs {
		switch {
		case p.Type == elf.PT_NOTE:
			l.notesOff, l.notesSize = p.Off, p.Filesz
		case p.Type == elf.PT_LOAD && p.Filesz > 0:
			if l.firstLoad == 0 {
				l.firstLoad = p.Off
			}
			l.lastLoadEnd = p.Off + p.Filesz
			l.loads = append(l.loads, p)
			l.loadIndex = append(l.loadIndex, uint64(i))
		}
	}
	if l.notesSize == 0 || len(l.loads) < 2 {
		t.Fatalf("core has no notes or too few segments: %+v", l)
	}
	return l
}

// findNote returns the offset in core of the descriptor of the first note
// of type typ, and its size.
func findNote(t *testing.T, core []byte, l coreLayout, typ uint32) (off, size uint64) {
	t.Helper()
	off, end := l.notesOff, l.notesOff+l.notesSize
	for off+12 <= end {
		namesz, descsz, ntype := binary.LittleEndian.Uint32(core[off:]), binary.LittleEndian.Uint32(core[off+4:]), binary.LittleEndian.Uint32(core[off+8:])
		desc := off + 12 + (uint64(namesz)+3)&^3
		if ntype == typ {
			return desc, uint64(descsz)
		}
		off = desc + (uint64(descsz)+3)&^3
	}
	t.Fatalf("no note of type %#x", typ)
	return 0, 0
}

// TestBrokenCores feeds Inspect cores broken in the ways real ones break
// (cut short at every stage, overwritten, from another machine, with the
// wrong executable). Each must give one clear line wrapping ErrInvalid, or,
// for a core cut inside its memory, a report that says it is truncated —
// never a panic, a hang or a report that does not say what is wrong.
func TestBrokenCores(t *testing.T) {
	t.Parallel()
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": brokenProgram}})
	other := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": otherProgram}})
	corePath, _ := crashtest.Core(t, exe, nil)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	l := layout(t, core)
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	patched := func(off uint64, v []byte) func([]byte) []byte {
		return func(c []byte) []byte {
			c = slices.Clone(c)
			copy(c[off:], v)
			return c
		}
	}
	cut := func(n uint64) func([]byte) []byte { return func(c []byte) []byte { return c[:n] } }
	u16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	u32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	mid := l.loads[len(l.loads)/2]
	fileNote, _ := findNote(t, core, l, corefile.NTFile)
	auxv, auxvSize := findNote(t, core, l, corefile.NTAuxv)
	phdr := func(i int, field uint64) uint64 { return l.phoff + l.loadIndex[i]*l.phentsize + field }

	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		exe    string
		want   string // the error says this
		report bool   // a report that says the core is truncated, not an error
		save   string // the name of its head in testdata/broken
	}{
		{"empty", cut(0), exe, "is empty", false, ""},
		{"cut inside the ELF header", cut(40), exe, "truncated inside its ELF header", false, "header-cut.core"},
		{"cut inside the program headers", cut(l.phoff + 2*l.phentsize + 7), exe, "truncated inside its program headers", false, "phdrs-cut.core"},
		{"cut inside the notes", cut(l.notesOff + l.notesSize/2), exe, "truncated inside its notes", false, "notes-cut.core"},
		{"cut right after the notes", cut(l.firstLoad + 100), exe, "", true, "truncated-memory-after-notes.core"},
		{"cut inside a middle segment", cut(mid.Off + mid.Filesz/2), exe, "", true, ""},
		{"cut inside the last segment", cut(l.lastLoadEnd - 100), exe, "", true, ""},
		{"random bytes", func([]byte) []byte { return random }, exe, "is not an ELF file", false, "random.core"},
		{"ELF magic then random bytes", func([]byte) []byte { return append([]byte(elf.ELFMAG), random...) }, exe, "core", false, ""},
		{"aarch64 header", patched(18, u16(uint16(elf.EM_AARCH64))), exe, "is for EM_AARCH64", false, "aarch64.core"},
		{"note size past the notes", patched(l.notesOff+4, u32(0xfffffff0)), exe, "malformed note", false, "note-size.core"},
		{"short thread note", patched(l.notesOff+4, u32(8)), exe, "malformed", false, "short-prstatus.core"},
		{"NT_FILE with 2^60 mappings", patched(fileNote, u64(1<<60)), exe, "malformed NT_FILE note", false, "ntfile-count.core"},
		{"segment overlapping the notes", patched(phdr(1, 8), u64(l.notesOff)), exe, "overlapping segments", false, "overlap.core"},
		{"segment size wrapping around", patched(phdr(0, 32), u64(^uint64(0)-8)), exe, "malformed ELF headers", false, ""},
		{"no entry point", patched(auxv, bytes.Repeat([]byte{0xff}, int(auxvSize))), exe, "no entry point", false, ""},
		{"wrong executable", slices.Clone[[]byte], other, "does not match the core", false, ""},
		{"core given as the executable", slices.Clone[[]byte], corePath, "not a program", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broken := tc.mutate(core)
			path := filepath.Join(t.TempDir(), "core")
			if err := os.WriteFile(path, broken, 0o600); err != nil {
				t.Fatal(err)
			}
			if *updateBroken && tc.save != "" {
				// What the pre-checks read is in the first few KiB.
				head := broken[:min(len(broken), int(l.firstLoad)+100)]
				if err := os.WriteFile(filepath.Join(brokenDir, tc.save), head, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r, err := Inspect(context.Background(), path, tc.exe, Options{})
			if tc.report {
				if err != nil {
					t.Fatalf("Inspect = %v; want a report that says the core is truncated", err)
				}
				checkTruncatedReport(t, r)
				return
			}
			if err == nil {
				t.Fatalf("Inspect gave a report, want an error saying %q: %s", tc.want, dump(r))
			}
			if !errors.Is(err, corepipe.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Inspect = %v; want an ErrInvalid saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			t.Log(err)
		})
	}
}

// checkTruncatedReport requires a report of a truncated core to say so and
// to hold what the notes alone tell: the signal and the threads.
func checkTruncatedReport(t *testing.T, r *corepipe.Report) {
	t.Helper()
	i := slices.IndexFunc(r.Diagnosis, func(d corepipe.Diagnosis) bool { return d.Code == "core_truncated" })
	if i < 0 || !r.Artifacts.Core.Truncated {
		t.Fatalf("report of a truncated core does not say so: %s", dump(r))
	}
	if r.Signal == nil || r.Signal.Name != "SIGABRT" || len(r.Threads) == 0 {
		t.Errorf("truncated report lost what the notes say: signal %+v, %d threads", r.Signal, len(r.Threads))
	}
	if strings.Contains(r.Diagnosis[i].Message, "\n") {
		t.Errorf("truncation note spans lines: %q", r.Diagnosis[i].Message)
	}
	t.Logf("%d goroutines: %s", len(r.Goroutines), r.Diagnosis[i].Message)
}

// TestAllgLimit: runtime.allglen from a damaged core is clamped to what the
// core can hold, so paging stops at the core's end, not after 2^64 entries.
func TestAllgLimit(t *testing.T) {
	for _, tc := range []struct {
		allglen  uint64
		coreSize int64
		want     int
		clamped  bool
	}{
		{100007, 307 << 20, 100007, false},
		{0, 1 << 20, 1 << 20 / minGSize, false},
		{1 << 40, 1 << 20, 1 << 20 / minGSize, true},
		{^uint64(0), 1 << 50, maxAllg, true},
	} {
		got, clamped := allgLimit(tc.allglen, tc.coreSize)
		if got != tc.want || clamped != tc.clamped {
			t.Errorf("allgLimit(%d, %d) = %d, %v; want %d, %v", tc.allglen, tc.coreSize, got, clamped, tc.want, tc.clamped)
		}
	}
}

// TestSharingFrames: goroutines with the same stack share one slice, a
// different stack keeps its own.
func TestSharingFrames(t *testing.T) {
	s := newSharing()
	stack := func(line int) []corepipe.Frame {
		return []corepipe.Frame{{Function: "main.f", File: "/m.go", Line: line, PC: "0x1"}, {Function: "main.main", File: "/m.go", Line: 9, PC: "0x2"}}
	}
	a, b, c := s.frames(stack(3)), s.frames(stack(3)), s.frames(stack(4))
	if &a[0] != &b[0] {
		t.Error("identical stacks are stored twice")
	}
	if &a[0] == &c[0] || c[0].Line != 4 {
		t.Errorf("a different stack was merged: %+v", c)
	}
	if cap(a) != len(a) {
		t.Error("a shared stack has spare capacity: an append would write into other goroutines' frames")
	}
}
