// Package corefile reads what the analyzer needs of an ELF core and its
// executable before a debugger sees them: the kernel's notes (threads and
// their registers, the signal, the memory map, the entry point), the layout
// checks that tell a truncated core from garbage, and the check that an
// executable is the one that dumped the core. It is pure ELF, bounded by the
// file, and fuzzed; package inspect hands the core to delve only once it
// passed here, as delve keeps pkg/proc/core apart from pkg/proc.
package corefile

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/buildid"
)

// Note types the kernel writes into a core (linux/elf.h). debug/elf only
// names the portable ones.
const (
	NTPrstatus = 1
	NTAuxv     = 6
	NTSiginfo  = 0x53494749 // "SIGI"
	NTFile     = 0x46494c45 // "FILE"

	// ATEntry is AT_ENTRY in the auxiliary vector.
	ATEntry = 9
)

// maxNotes bounds what is read of a core's PT_NOTE segments: a process with
// tens of thousands of threads has a few tens of MiB of notes, a damaged core
// can claim anything.
const maxNotes = 64 << 20

// amd64 layout of struct elf_prstatus (linux/elfcore.h): pr_cursig at 12,
// pr_pid at 32, pr_reg (user_regs_struct) at 112.
const (
	PrstatusCursig = 12
	PrstatusPid    = 32
	prstatusRegs   = 112
	regRSP         = 19 * 8
	regRIP         = 16 * 8
	// PrstatusMinLen is the shortest NT_PRSTATUS accepted.
	PrstatusMinLen = prstatusRegs + 27*8
)

// Thread is one thread's NT_PRSTATUS.
type Thread struct {
	TID    int
	Cursig int
	PC, SP uint64
}

// Siginfo is the NT_SIGINFO of the thread that dumped the core: the signal
// that killed the process as the kernel delivered it.
type Siginfo struct {
	Signo, Code int
	Addr        uint64
}

// Mapping is one NT_FILE entry: a file mapped into the process.
type Mapping struct {
	Start, End, Off uint64 // Off in bytes
	Path            string
}

// Core is what the analyzer needs from the core before handing it to
// delve: the kernel's view of the crash and enough of the memory map to tell
// whether an executable belongs to it.
type Core struct {
	Path     string
	Size     int64
	Threads  []Thread // the dumping thread first, as the kernel writes it
	Siginfo  *Siginfo
	Mappings []Mapping
	Entry    uint64 // AT_ENTRY: where the kernel started the executable
	// Machine is the core's architecture, one of those Arch names.
	Machine elf.Machine
	// Truncated is set when the file ends inside the memory segments.
	Truncated *Truncation
	f         *elf.File
	file      *os.File
}

// Open checks that path is an ELF core of the host architecture whose
// notes parse and reads them. Errors wrap corepipe.ErrInvalid: no retry can
// fix them. A core cut short inside its memory segments is accepted and
// marked (see Truncation); one cut inside its headers or notes is not.
func Open(path string) (*Core, error) {
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

// Truncation records a core whose memory segments end past the end of the
// file: the kernel stops writing at RLIMIT_CORE, the collector at its
// max_core_size, a disk fills. The notes come first in a core, so the
// threads, the signal and the memory map survive; memory past the cut
// reads as missing, and delve reports what it cannot read.
type Truncation struct {
	Have, Want uint64 // bytes in the file, bytes the program headers describe
}

const elfHeaderSize = 64 // Elf64_Ehdr

func readCore(fh *os.File, path string) (*Core, error) {
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat core: %w", err)
	}
	size := uint64(st.Size())
	if size == 0 {
		return nil, fmt.Errorf("core %s is empty: %w", path, corepipe.ErrInvalid)
	}
	var head [elfHeaderSize]byte
	n, _ := fh.ReadAt(head[:], 0)
	if n < len(elf.ELFMAG) || string(head[:len(elf.ELFMAG)]) != elf.ELFMAG {
		return nil, fmt.Errorf("core %s is not an ELF file (it starts with %x): %w", path, head[:min(n, 8)], corepipe.ErrInvalid)
	}
	if n < elfHeaderSize {
		return nil, fmt.Errorf("core %s is truncated inside its ELF header: %d bytes: %w", path, n, corepipe.ErrInvalid)
	}
	// Checked before debug/elf reads the table, which it would try to,
	// in 10 MiB steps, however big the header says it is.
	if end, ok := programHeadersEnd(head[:]); ok && end > size {
		return nil, fmt.Errorf("core %s is truncated inside its program headers: %d of %d bytes: %w", path, size, end, corepipe.ErrInvalid)
	}
	f, err := elf.NewFile(fh)
	if err != nil {
		return nil, fmt.Errorf("core %s has malformed ELF headers (%v): %w", path, err, corepipe.ErrInvalid)
	}
	if Arch(f.Machine) == "" {
		return nil, fmt.Errorf("core %s is for %s: corepipe reads linux/amd64 and linux/arm64 cores: %w", path, f.Machine, corepipe.ErrInvalid)
	}
	if f.Type != elf.ET_CORE {
		return nil, fmt.Errorf("%s is an ELF %s, not a core dump: %w", path, f.Type, corepipe.ErrInvalid)
	}
	c := &Core{Path: path, Size: st.Size(), Machine: f.Machine, f: f, file: fh}
	if err := c.checkLayout(size); err != nil {
		return nil, fmt.Errorf("core %s %w", path, err)
	}
	if err := c.readNotes(); err != nil {
		return nil, fmt.Errorf("core %s: %w", path, err)
	}
	if len(c.Threads) == 0 {
		return nil, fmt.Errorf("core %s has no thread (NT_PRSTATUS) notes: %w", path, corepipe.ErrInvalid)
	}
	return c, nil
}

// programHeadersEnd is where the program header table of a 64-bit
// little-endian ELF header ends.
func programHeadersEnd(head []byte) (uint64, bool) {
	if elf.Class(head[elf.EI_CLASS]) != elf.ELFCLASS64 || elf.Data(head[elf.EI_DATA]) != elf.ELFDATA2LSB {
		return 0, false
	}
	le := binary.LittleEndian
	phoff, phentsize, phnum := le.Uint64(head[32:]), uint64(le.Uint16(head[54:])), uint64(le.Uint16(head[56:]))
	end := phoff + phentsize*phnum
	return end, end >= phoff
}

// checkLayout requires the notes to be complete and the memory segments to
// be laid out as the kernel writes them — one after another, after the
// notes — so that a core ending early is a truncated core, not garbage
// whose headers point anywhere. It records the truncation if there is one.
func (c *Core) checkLayout(size uint64) error {
	var notesEnd, loadEnd uint64
	hasNotes := false
	for _, p := range c.f.Progs {
		// debug/elf has checked that both are below 2^63.
		end := p.Off + p.Filesz
		switch p.Type {
		case elf.PT_NOTE:
			hasNotes = true
			if end > size {
				return fmt.Errorf("is truncated inside its notes: %d of %d bytes: %w", size, end, corepipe.ErrInvalid)
			}
			notesEnd = max(notesEnd, end)
		case elf.PT_LOAD:
			if p.Filesz == 0 {
				continue
			}
			if p.Off < loadEnd || p.Off < notesEnd {
				return fmt.Errorf("has overlapping segments (a PT_LOAD at offset %#x, before %#x): %w", p.Off, max(loadEnd, notesEnd), corepipe.ErrInvalid)
			}
			loadEnd = end
		}
	}
	if !hasNotes {
		return fmt.Errorf("has no notes (PT_NOTE): %w", corepipe.ErrInvalid)
	}
	if loadEnd > size {
		c.Truncated = &Truncation{Have: size, Want: loadEnd}
	}
	return nil
}

// Close closes the core's file.
func (c *Core) Close() error { return c.file.Close() }

// KillSignal is the signal the kernel dumped the core for: the dumping
// thread's NT_SIGINFO, else its NT_PRSTATUS.
func (c *Core) KillSignal() int {
	if c.Siginfo != nil && c.Siginfo.Signo > 0 {
		return c.Siginfo.Signo
	}
	return c.Threads[0].Cursig
}

// Arch is the GOARCH of the cores of machine m that the analyzer reads
// (delve reads both on either), "" for any other.
func Arch(m elf.Machine) string {
	switch m {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	}
	return ""
}

// readNotes parses every PT_NOTE segment. Each is read whole, so its size is
// capped first: nothing is allocated by a size read from the file unless
// the file holds that many bytes and the cap allows it.
func (c *Core) readNotes() error {
	var total uint64
	for _, p := range c.f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		if p.Filesz > maxNotes-total {
			return fmt.Errorf("notes exceed %d bytes: %w", maxNotes, corepipe.ErrInvalid)
		}
		total += p.Filesz
		data := make([]byte, p.Filesz)
		if _, err := io.ReadFull(p.Open(), data); err != nil {
			return fmt.Errorf("read notes: %v: %w", err, corepipe.ErrInvalid)
		}
		var bad error
		err := walkNotes(data, binary.LittleEndian, func(name string, typ uint32, desc []byte) {
			if bad != nil || (name != "CORE" && name != "LINUX") {
				return
			}
			bad = c.note(typ, desc)
		})
		if err == nil {
			err = bad
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// regOffsets gives where the stack pointer and program counter are in
// pr_reg: user_regs_struct on amd64, user_pt_regs (x0-x30, sp, pc) on arm64.
func regOffsets(m elf.Machine) (sp, pc int) {
	if m == elf.EM_AARCH64 {
		return 31 * 8, 32 * 8
	}
	return regRSP, regRIP
}

func (c *Core) note(typ uint32, desc []byte) error {
	le := binary.LittleEndian
	switch typ {
	case NTPrstatus:
		// Delve decodes the same note and fails less clearly.
		sp, pc := regOffsets(c.Machine)
		if need := max(PrstatusMinLen, prstatusRegs+pc+8); len(desc) < need {
			return fmt.Errorf("malformed NT_PRSTATUS note: %d bytes, want at least %d as the core is for %s: %w", len(desc), need, c.Machine, corepipe.ErrInvalid)
		}
		c.Threads = append(c.Threads, Thread{
			TID:    int(int32(le.Uint32(desc[PrstatusPid:]))),
			Cursig: int(le.Uint16(desc[PrstatusCursig:])),
			PC:     le.Uint64(desc[prstatusRegs+pc:]),
			SP:     le.Uint64(desc[prstatusRegs+sp:]),
		})
	case NTSiginfo:
		if len(desc) >= 24 && c.Siginfo == nil {
			c.Siginfo = &Siginfo{
				Signo: int(int32(le.Uint32(desc[0:]))),
				Code:  int(int32(le.Uint32(desc[8:]))),
				Addr:  le.Uint64(desc[16:]),
			}
		}
	case NTAuxv:
		for i := 0; i+16 <= len(desc); i += 16 {
			if le.Uint64(desc[i:]) == ATEntry {
				c.Entry = le.Uint64(desc[i+8:])
			}
		}
	case NTFile:
		ms, err := parseNTFile(desc)
		if err != nil {
			return err
		}
		c.Mappings = ms
	}
	return nil
}

// parseNTFile decodes NT_FILE: count, page size, count (start, end, page
// offset) triples, then count NUL-terminated paths.
func parseNTFile(desc []byte) ([]Mapping, error) {
	le := binary.LittleEndian
	if len(desc) < 16 {
		return nil, fmt.Errorf("malformed NT_FILE note: %d bytes: %w", len(desc), corepipe.ErrInvalid)
	}
	count, pageSize := le.Uint64(desc), le.Uint64(desc[8:])
	if count > uint64(len(desc)-16)/24 {
		return nil, fmt.Errorf("malformed NT_FILE note: %d mappings in %d bytes: %w", count, len(desc), corepipe.ErrInvalid)
	}
	names := desc[16+24*count:]
	ms := make([]Mapping, 0, count)
	for i := uint64(0); i < count; i++ {
		e := desc[16+24*i:]
		name, rest, ok := bytes.Cut(names, []byte{0})
		if !ok {
			return nil, fmt.Errorf("malformed NT_FILE note: %d of %d paths: %w", i, count, corepipe.ErrInvalid)
		}
		names = rest
		ms = append(ms, Mapping{Start: le.Uint64(e), End: le.Uint64(e[8:]), Off: le.Uint64(e[16:]) * pageSize, Path: string(name)})
	}
	return ms, nil
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

// ReadMemory reads the dumped memory at addr, or returns fewer bytes when the
// core does not hold them (a mapping the kernel did not dump).
func (c *Core) ReadMemory(addr uint64, n int) []byte {
	for _, p := range c.f.Progs {
		if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr-p.Vaddr >= p.Filesz {
			continue
		}
		avail := p.Filesz - (addr - p.Vaddr)
		if uint64(n) > avail {
			n = int(avail)
		}
		buf := make([]byte, n)
		k, _ := p.ReadAt(buf, int64(addr-p.Vaddr))
		return buf[:k]
	}
	return nil
}

// MainMapping returns the mapping of the executable that the kernel started
// (the file mapped at AT_ENTRY), lowest address first.
func (c *Core) MainMapping() (path string, base uint64, ok bool) {
	for _, m := range c.Mappings {
		if c.Entry >= m.Start && c.Entry < m.End {
			path = m.Path
			ok = true
			break
		}
	}
	if !ok {
		return "", 0, false
	}
	base = ^uint64(0)
	for _, m := range c.Mappings {
		if m.Path == path && m.Off == 0 && m.Start < base {
			base = m.Start
		}
	}
	return path, base, base != ^uint64(0)
}

// Exe is what identifies an executable.
type Exe struct {
	Path    string
	Type    elf.Type
	Machine elf.Machine
	Entry   uint64
	// FirstVaddr is where the segment holding the start of the file is
	// linked: 0 for a PIE, 0x400000 for a classic amd64 executable.
	FirstVaddr uint64
	Head       []byte // the first page of the file, at most HeadSize bytes
	GNUBuildID string
	GoBuildID  string
}

// HeadSize is how much of the executable's start CheckExe compares.
const HeadSize = 4096

// ReadExe reads what identifies the executable at path. Errors that no
// retry can fix wrap corepipe.ErrInvalid.
func ReadExe(path string) (*Exe, error) {
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
	if Arch(f.Machine) == "" {
		return nil, fmt.Errorf("executable %s is for %s: corepipe reads linux/amd64 and linux/arm64 programs: %w", path, f.Machine, corepipe.ErrInvalid)
	}
	e := &Exe{Path: path, Type: f.Type, Machine: f.Machine, Entry: f.Entry, Head: make([]byte, HeadSize)}
	n, _ := fh.ReadAt(e.Head, 0)
	e.Head = e.Head[:n]
	// The same bounded reader that keyed the executable's storage.
	if ids, err := buildid.Read(fh); err == nil {
		e.GNUBuildID, e.GoBuildID = ids.GNU, ids.Go
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Off == 0 {
			e.FirstVaddr = p.Vaddr
			break
		}
	}
	return e, nil
}

// ErrWrongExe is returned, wrapped, when an executable does not belong to a
// core: delve would produce a report of the wrong program, or allocate
// wildly while trying.
var ErrWrongExe = errors.New("executable does not match the core")

// CheckExe verifies that exe is the program that dumped core: the first page
// of the executable, which holds its build ID notes, must be the page the
// kernel dumped where it mapped the start of the file; when the kernel did
// not dump that page, the entry point must agree. The mapping comes from
// NT_FILE, or, without it, from the executable's own program headers moved
// by the load bias that AT_ENTRY implies.
func (c *Core) CheckExe(exe *Exe) error {
	if exe.Machine != c.Machine {
		return fmt.Errorf("%w: core %s is for %s, %s for %s: %w", ErrWrongExe, c.Path, c.Machine, exe.Path, exe.Machine, corepipe.ErrInvalid)
	}
	if c.Entry == 0 {
		return fmt.Errorf("core %s has no entry point (NT_AUXV AT_ENTRY), so nothing tells whether %s dumped it: %w", c.Path, exe.Path, corepipe.ErrInvalid)
	}
	path, base, ok := c.MainMapping()
	if !ok {
		path, base = "its program", exe.FirstVaddr
		if exe.Type == elf.ET_DYN {
			base += c.Entry - exe.Entry
		}
	}
	if page := c.ReadMemory(base, len(exe.Head)); len(page) > 0 {
		if bytes.Equal(page, exe.Head[:len(page)]) {
			return nil
		}
		return c.mismatch(exe, path, page)
	}
	want := exe.Entry
	if exe.Type == elf.ET_DYN {
		want += base - exe.FirstVaddr
	}
	if want != c.Entry {
		return c.mismatch(exe, path, nil)
	}
	return nil
}

func (c *Core) mismatch(exe *Exe, corePath string, page []byte) error {
	coreID := "unknown build ID"
	// The first page as the kernel dumped it: the section headers are at
	// the end of the file, so only the PT_NOTE notes are found in it.
	if ids, _ := buildid.ReadImage(page); ids.Go != "" {
		coreID = "Go build ID " + ids.Go
	} else if ids.GNU != "" {
		coreID = "build ID " + ids.GNU
	}
	exeID := "no build ID"
	if exe.GoBuildID != "" {
		exeID = "Go build ID " + exe.GoBuildID
	} else if exe.GNUBuildID != "" {
		exeID = "build ID " + exe.GNUBuildID
	}
	return fmt.Errorf("%w: core %s was dumped by %s (%s), %s has %s: %w",
		ErrWrongExe, c.Path, corePath, coreID, exe.Path, exeID, corepipe.ErrInvalid)
}
