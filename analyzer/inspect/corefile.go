package inspect

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/corepipe/corepipe"
)

// Note types the kernel writes into a core (linux/elf.h). debug/elf only
// names the portable ones.
const (
	ntPrstatus = 1
	ntAuxv     = 6
	ntSiginfo  = 0x53494749 // "SIGI"
	ntFile     = 0x46494c45 // "FILE"
	ntGNUBuild = 3          // NT_GNU_BUILD_ID, owner "GNU"
	ntGoBuild  = 4          // Go build ID, owner "Go"

	atEntry = 9 // AT_ENTRY in the auxiliary vector
)

// maxNotes bounds what is read of a core's PT_NOTE segments: a process with
// tens of thousands of threads has a few tens of MiB of notes, a damaged core
// can claim anything.
const maxNotes = 64 << 20

// amd64 layout of struct elf_prstatus (linux/elfcore.h): pr_cursig at 12,
// pr_pid at 32, pr_reg (user_regs_struct) at 112.
const (
	prstatusCursig = 12
	prstatusPid    = 32
	prstatusRegs   = 112
	regRSP         = 19 * 8
	regRIP         = 16 * 8
	prstatusMinLen = prstatusRegs + 27*8
)

// coreThread is one thread's NT_PRSTATUS.
type coreThread struct {
	tid    int
	cursig int
	pc, sp uint64
}

// siginfo is the NT_SIGINFO of the thread that dumped the core: the signal
// that killed the process as the kernel delivered it.
type siginfo struct {
	signo, code int
	addr        uint64
}

// mapping is one NT_FILE entry: a file mapped into the process.
type mapping struct {
	start, end, off uint64 // off in bytes
	path            string
}

// coreFile is what the analyzer needs from the core before handing it to
// delve: the kernel's view of the crash and enough of the memory map to tell
// whether an executable belongs to it.
type coreFile struct {
	path     string
	threads  []coreThread // the dumping thread first, as the kernel writes it
	siginfo  *siginfo
	mappings []mapping
	entry    uint64 // AT_ENTRY: where the kernel started the executable
	f        *elf.File
	file     *os.File
}

// openCore checks that path is a complete ELF core of the host architecture
// and reads its notes. Errors wrap corepipe.ErrInvalid: no retry can fix them.
func openCore(path string) (*coreFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open core: %w", err)
	}
	c, err := readCore(fh, path)
	if err != nil {
		fh.Close()
		return nil, err
	}
	return c, nil
}

func readCore(fh *os.File, path string) (*coreFile, error) {
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat core: %w", err)
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("core %s is empty: %w", path, corepipe.ErrInvalid)
	}
	f, err := elf.NewFile(fh)
	if err != nil {
		return nil, fmt.Errorf("core %s is not an ELF file (%v): %w", path, err, corepipe.ErrInvalid)
	}
	if f.Type != elf.ET_CORE {
		return nil, fmt.Errorf("%s is an ELF %s, not a core dump: %w", path, f.Type, corepipe.ErrInvalid)
	}
	if want := hostMachine(); f.Machine != want {
		return nil, fmt.Errorf("core %s is for %s, this analyzer reads %s cores: %w", path, f.Machine, want, corepipe.ErrInvalid)
	}
	// A core cut short (disk full, size limit, a crash of the collector) still
	// parses as ELF; delve would then read zeros or fail deep inside.
	var want uint64
	for _, p := range f.Progs {
		if end := p.Off + p.Filesz; end > want {
			want = end
		}
	}
	if uint64(st.Size()) < want {
		return nil, fmt.Errorf("core %s is truncated: %d of %d bytes: %w", path, st.Size(), want, corepipe.ErrInvalid)
	}
	c := &coreFile{path: path, f: f, file: fh}
	if err := c.readNotes(); err != nil {
		return nil, fmt.Errorf("core %s: %w", path, err)
	}
	if len(c.threads) == 0 {
		return nil, fmt.Errorf("core %s has no thread (NT_PRSTATUS) notes: %w", path, corepipe.ErrInvalid)
	}
	return c, nil
}

func (c *coreFile) Close() error { return c.file.Close() }

func hostMachine() elf.Machine {
	switch runtime.GOARCH {
	case "arm64":
		return elf.EM_AARCH64
	default:
		return elf.EM_X86_64
	}
}

func (c *coreFile) readNotes() error {
	var total uint64
	for _, p := range c.f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		total += p.Filesz
		if total > maxNotes {
			return fmt.Errorf("notes exceed %d bytes: %w", maxNotes, corepipe.ErrInvalid)
		}
		data := make([]byte, p.Filesz)
		if _, err := io.ReadFull(p.Open(), data); err != nil {
			return fmt.Errorf("read notes: %v: %w", err, corepipe.ErrInvalid)
		}
		err := walkNotes(data, binary.LittleEndian, func(name string, typ uint32, desc []byte) {
			if name != "CORE" && name != "LINUX" {
				return
			}
			c.note(typ, desc)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *coreFile) note(typ uint32, desc []byte) {
	le := binary.LittleEndian
	switch typ {
	case ntPrstatus:
		if len(desc) < prstatusMinLen || hostMachine() != elf.EM_X86_64 {
			return
		}
		c.threads = append(c.threads, coreThread{
			tid:    int(int32(le.Uint32(desc[prstatusPid:]))),
			cursig: int(le.Uint16(desc[prstatusCursig:])),
			pc:     le.Uint64(desc[prstatusRegs+regRIP:]),
			sp:     le.Uint64(desc[prstatusRegs+regRSP:]),
		})
	case ntSiginfo:
		if len(desc) >= 24 && c.siginfo == nil {
			c.siginfo = &siginfo{
				signo: int(int32(le.Uint32(desc[0:]))),
				code:  int(int32(le.Uint32(desc[8:]))),
				addr:  le.Uint64(desc[16:]),
			}
		}
	case ntAuxv:
		for i := 0; i+16 <= len(desc); i += 16 {
			if le.Uint64(desc[i:]) == atEntry {
				c.entry = le.Uint64(desc[i+8:])
			}
		}
	case ntFile:
		c.mappings = parseNTFile(desc)
	}
}

// parseNTFile decodes NT_FILE: count, page size, count (start, end, page
// offset) triples, then count NUL-terminated paths.
func parseNTFile(desc []byte) []mapping {
	le := binary.LittleEndian
	if len(desc) < 16 {
		return nil
	}
	count, pageSize := le.Uint64(desc), le.Uint64(desc[8:])
	if count > uint64(len(desc))/24 {
		return nil
	}
	names := desc[16+24*count:]
	ms := make([]mapping, 0, count)
	for i := uint64(0); i < count; i++ {
		e := desc[16+24*i:]
		name, rest, ok := bytes.Cut(names, []byte{0})
		if !ok {
			break
		}
		names = rest
		ms = append(ms, mapping{start: le.Uint64(e), end: le.Uint64(e[8:]), off: le.Uint64(e[16:]) * pageSize, path: string(name)})
	}
	return ms
}

// walkNotes calls fn for each ELF note in data.
func walkNotes(data []byte, bo binary.ByteOrder, fn func(name string, typ uint32, desc []byte)) error {
	for len(data) >= 12 {
		namesz, descsz, typ := uint64(bo.Uint32(data)), uint64(bo.Uint32(data[4:])), bo.Uint32(data[8:])
		nameEnd := 12 + align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if nameEnd > uint64(len(data)) || nameEnd+descsz > uint64(len(data)) {
			return fmt.Errorf("malformed note: %w", corepipe.ErrInvalid)
		}
		fn(string(bytes.TrimRight(data[12:12+namesz], "\x00")), typ, data[nameEnd:nameEnd+descsz])
		if descEnd > uint64(len(data)) {
			break
		}
		data = data[descEnd:]
	}
	return nil
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// readMemory reads the dumped memory at addr, or returns fewer bytes when the
// core does not hold them (a mapping the kernel did not dump).
func (c *coreFile) readMemory(addr uint64, n int) []byte {
	for _, p := range c.f.Progs {
		if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr >= p.Vaddr+p.Filesz {
			continue
		}
		avail := p.Vaddr + p.Filesz - addr
		if uint64(n) > avail {
			n = int(avail)
		}
		buf := make([]byte, n)
		k, _ := p.ReadAt(buf, int64(addr-p.Vaddr))
		return buf[:k]
	}
	return nil
}

// mainMapping returns the mappings of the executable that the kernel started
// (the file mapped at AT_ENTRY), lowest address first.
func (c *coreFile) mainMapping() (path string, base uint64, ok bool) {
	for _, m := range c.mappings {
		if c.entry >= m.start && c.entry < m.end {
			path = m.path
			ok = true
			break
		}
	}
	if !ok {
		return "", 0, false
	}
	base = ^uint64(0)
	for _, m := range c.mappings {
		if m.path == path && m.off == 0 && m.start < base {
			base = m.start
		}
	}
	return path, base, base != ^uint64(0)
}

// exeInfo is what identifies an executable.
type exeInfo struct {
	path      string
	typ       elf.Type
	entry     uint64
	head      []byte // the first page of the file
	gnuBuild  string
	goBuildID string
}

const headSize = 4096

func readExe(path string) (*exeInfo, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open executable: %w", err)
	}
	defer fh.Close()
	f, err := elf.NewFile(fh)
	if err != nil {
		return nil, fmt.Errorf("executable %s is not an ELF file (%v): %w", path, err, corepipe.ErrInvalid)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return nil, fmt.Errorf("executable %s is an ELF %s, not a program: %w", path, f.Type, corepipe.ErrInvalid)
	}
	if want := hostMachine(); f.Machine != want {
		return nil, fmt.Errorf("executable %s is for %s, not %s: %w", path, f.Machine, want, corepipe.ErrInvalid)
	}
	e := &exeInfo{path: path, typ: f.Type, entry: f.Entry, head: make([]byte, headSize)}
	n, _ := fh.ReadAt(e.head, 0)
	e.head = e.head[:n]
	e.gnuBuild, e.goBuildID = buildIDs(f)
	return e, nil
}

// buildIDs returns the GNU and Go build IDs from the notes of an ELF file.
func buildIDs(f *elf.File) (gnu, goID string) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz > 1<<20 {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := io.ReadFull(p.Open(), data); err != nil {
			continue
		}
		_ = walkNotes(data, f.ByteOrder, func(name string, typ uint32, desc []byte) {
			switch {
			case name == "GNU" && typ == ntGNUBuild:
				gnu = fmt.Sprintf("%x", desc)
			case name == "Go" && typ == ntGoBuild:
				goID = string(desc)
			}
		})
	}
	return gnu, goID
}

// errWrongExe is returned, wrapped, when an executable does not belong to a
// core: delve would produce a report of the wrong program, or allocate
// wildly while trying.
var errWrongExe = errors.New("executable does not match the core")

// checkExe verifies that exe is the program that dumped core: the first page
// of the executable, which holds its build ID notes, must be the page the
// kernel dumped for the mapping at AT_ENTRY; when the kernel did not dump
// that page, the entry point must agree.
func (c *coreFile) checkExe(exe *exeInfo) error {
	path, base, ok := c.mainMapping()
	if !ok {
		// Without NT_FILE/AUXV there is nothing to compare with.
		return nil
	}
	if page := c.readMemory(base, len(exe.head)); len(page) > 0 {
		if bytes.Equal(page, exe.head[:len(page)]) {
			return nil
		}
		return c.mismatch(exe, path, page)
	}
	want := exe.entry
	if exe.typ == elf.ET_DYN {
		want += base
	}
	if want != c.entry {
		return c.mismatch(exe, path, nil)
	}
	return nil
}

func (c *coreFile) mismatch(exe *exeInfo, corePath string, page []byte) error {
	coreID := "unknown build ID"
	if page != nil {
		if f, err := elf.NewFile(bytes.NewReader(page)); err == nil {
			if gnu, goID := buildIDs(f); goID != "" {
				coreID = "Go build ID " + goID
			} else if gnu != "" {
				coreID = "build ID " + gnu
			}
		}
	}
	exeID := "no build ID"
	if exe.goBuildID != "" {
		exeID = "Go build ID " + exe.goBuildID
	} else if exe.gnuBuild != "" {
		exeID = "build ID " + exe.gnuBuild
	}
	return fmt.Errorf("%w: core %s was dumped by %s (%s), %s has %s: %w",
		errWrongExe, c.path, corePath, coreID, exe.path, exeID, corepipe.ErrInvalid)
}
