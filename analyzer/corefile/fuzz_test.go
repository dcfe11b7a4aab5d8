package corefile

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
)

// brokenDir holds small broken cores cut from a real one (see
// inspect.TestBrokenCores and -update-broken): the seed corpus of
// FuzzPrecheck and the inputs of TestCommittedBrokenCores, which run
// without root.
const brokenDir = "testdata/broken"

// synthCore builds a minimal amd64 core: one PT_NOTE with the given notes,
// one PT_LOAD of load bytes at vaddr.
func synthCore(notes []byte, vaddr uint64, load []byte) []byte {
	le := binary.LittleEndian
	const ehsize, phsize = 64, 56
	notesOff := uint64(ehsize + 2*phsize)
	loadOff := notesOff + uint64(len(notes))
	b := make([]byte, loadOff)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS], b[elf.EI_DATA], b[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	le.PutUint16(b[16:], uint16(elf.ET_CORE))
	le.PutUint16(b[18:], uint16(elf.EM_X86_64))
	le.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(b[32:], ehsize) // phoff
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[54:], phsize)
	le.PutUint16(b[56:], 2)
	ph := func(i int, typ elf.ProgType, off, vaddr, size uint64) {
		p := b[ehsize+i*phsize:]
		le.PutUint32(p, uint32(typ))
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], vaddr)
		le.PutUint64(p[32:], size)
		le.PutUint64(p[40:], size)
	}
	ph(0, elf.PT_NOTE, notesOff, 0, uint64(len(notes)))
	ph(1, elf.PT_LOAD, loadOff, vaddr, uint64(len(load)))
	copy(b[notesOff:], notes)
	return append(b, load...)
}

func note(name string, typ uint32, desc []byte) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, uint32(len(name)+1))
	b = le.AppendUint32(b, uint32(len(desc)))
	b = le.AppendUint32(b, typ)
	b = append(b, name...)
	b = append(b, make([]byte, align4(uint64(len(name)+1))-uint64(len(name)))...)
	b = append(b, desc...)
	return append(b, make([]byte, align4(uint64(len(desc)))-uint64(len(desc)))...)
}

// synthSeed is a core that passes every pre-check: a thread, an entry
// point, and the executable's first page mapped and dumped at 0x400000.
func synthSeed() []byte {
	le := binary.LittleEndian
	prstatus := make([]byte, PrstatusMinLen+8)
	le.PutUint16(prstatus[PrstatusCursig:], 6)
	le.PutUint32(prstatus[PrstatusPid:], 42)
	auxv := le.AppendUint64(le.AppendUint64(nil, ATEntry), 0x401000)
	file := le.AppendUint64(le.AppendUint64(nil, 1), 4096)
	file = le.AppendUint64(le.AppendUint64(le.AppendUint64(file, 0x400000), 0x402000), 0)
	file = append(file, "/bin/prog\x00"...)
	var notes []byte
	notes = append(notes, note("CORE", NTPrstatus, prstatus)...)
	notes = append(notes, note("CORE", NTAuxv, auxv)...)
	notes = append(notes, note("CORE", NTFile, file)...)
	return synthCore(notes, 0x400000, make([]byte, 4096))
}

// FuzzPrecheck feeds the checks made before delve arbitrary files as core
// and executable. They must answer with nil or one line wrapping
// ErrInvalid, and allocate in proportion to the file, whatever sizes it
// claims.
func FuzzPrecheck(f *testing.F) {
	seed := synthSeed()
	f.Add(seed)
	f.Add(seed[:len(seed)-100])
	f.Add([]byte(elf.ELFMAG))
	entries, _ := os.ReadDir(brokenDir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(brokenDir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "core")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c, err := Open(path)
		checkPrecheckErr(t, "Open", err)
		if err == nil {
			c.KillSignal()
			exe := &Exe{Path: "exe", Type: elf.ET_EXEC, Entry: 0x401000, FirstVaddr: 0x400000, Head: data[:min(len(data), HeadSize)]}
			checkPrecheckErr(t, "CheckExe", c.CheckExe(exe))
			exe.Type = elf.ET_DYN
			checkPrecheckErr(t, "CheckExe of a PIE", c.CheckExe(exe))
			c.Close()
		}
		_, err = ReadExe(path)
		checkPrecheckErr(t, "ReadExe", err)
		runtime.ReadMemStats(&after)
		// debug/elf reads a table or section that the headers claim in
		// steps of at most 10 MiB (internal/saferio), stopping at the end
		// of the file: a few such steps for the core and the executable.
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(16*len(data)+50<<20); got > limit {
			t.Errorf("pre-checks of a %d-byte file allocated %d bytes", len(data), got)
		}
	})
}

func checkPrecheckErr(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if !errors.Is(err, corepipe.ErrInvalid) {
		t.Errorf("%s: %v does not wrap ErrInvalid", what, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("%s: error spans lines: %q", what, err)
	}
}

// TestCommittedBrokenCores checks the committed broken cores without root:
// each is rejected with one clear line, except a core cut inside its memory,
// which is accepted as truncated.
func TestCommittedBrokenCores(t *testing.T) {
	entries, err := os.ReadDir(brokenDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("no broken cores in %s (%v): regenerate them as root with go test -run TestBrokenCores ./analyzer/inspect -args -update-broken", brokenDir, err)
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			c, err := Open(filepath.Join(brokenDir, e.Name()))
			if strings.HasPrefix(e.Name(), "truncated-memory") {
				if err != nil || c.Truncated == nil {
					t.Fatalf("Open = %v, %v; want a core marked truncated", c, err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("Open accepted a broken core")
			}
			checkPrecheckErr(t, "Open", err)
			t.Log(err)
		})
	}
}
