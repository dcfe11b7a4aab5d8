package inspect

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/corefile"
)

// Stack scanning bounds: how much of a thread's stack is searched for
// return addresses.
const scanBytes = 64 << 10

// native names and finds the frames delve cannot: in a program without
// DWARF, and in shared libraries whose files the analyzer does not have.
// Its frames come from the executable's symbol table and, below the
// innermost one, from scanning the stack for return addresses into the
// executable — words that follow a call instruction — as native crash
// reporters do when there is no unwind information to follow.
type native struct {
	c    *coreFile
	f    *elf.File
	bias uint64 // load address minus link address (PIE)
	syms []elf.Symbol
	exe  []corefile.Mapping // where the executable is mapped
}

// newNative reads the executable's symbols; it returns nil when exePath
// cannot be read.
func (c *coreFile) newNative(exePath string) *native {
	f, err := elf.Open(exePath)
	if err != nil {
		return nil
	}
	n := &native{c: c, f: f}
	if path, base, ok := c.MainMapping(); ok {
		if f.Type == elf.ET_DYN {
			n.bias = base - firstLoad(f)
		}
		for _, m := range c.Mappings {
			if m.Path == path {
				n.exe = append(n.exe, m)
			}
		}
	}
	syms, _ := f.Symbols()
	if len(syms) == 0 {
		syms, _ = f.DynamicSymbols()
	}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			n.syms = append(n.syms, s)
		}
	}
	sort.Slice(n.syms, func(i, j int) bool { return n.syms[i].Value < n.syms[j].Value })
	return n
}

func (n *native) Close() { n.f.Close() }

func firstLoad(f *elf.File) uint64 {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			return p.Vaddr &^ 0xfff
		}
	}
	return 0
}

// stack returns the frames of a thread stopped at pc with stack pointer sp.
func (n *native) stack(pc, sp uint64) []corepipe.Frame {
	frames := []corepipe.Frame{n.frame(pc)}
	mem := n.c.ReadMemory(sp, scanBytes)
	for off := 0; off+8 <= len(mem) && len(frames) < threadFrames; off += 8 {
		ret := binary.LittleEndian.Uint64(mem[off:])
		if n.afterCall(ret) {
			frames = append(frames, n.frame(ret-1))
		}
	}
	return frames
}

// frame names the code at pc: a function of the executable, else the
// mapped file and offset ("libc.so.6+0xe2f3a").
func (n *native) frame(pc uint64) corepipe.Frame {
	f := corepipe.Frame{PC: hex(pc)}
	if s := n.symbol(pc); s != nil {
		f.Function = s.Name
		return f
	}
	for _, m := range n.c.Mappings {
		if pc >= m.Start && pc < m.End {
			f.Function = fmt.Sprintf("%s+%#x", filepath.Base(m.Path), pc-m.Start+m.Off)
			f.File = m.Path
			return f
		}
	}
	f.Function = "?"
	return f
}

func (n *native) symbol(pc uint64) *elf.Symbol {
	mapped := len(n.exe) == 0 // without NT_FILE, trust the symbol table
	for _, m := range n.exe {
		mapped = mapped || pc >= m.Start && pc < m.End
	}
	if !mapped {
		return nil
	}
	addr := pc - n.bias
	i := sort.Search(len(n.syms), func(i int) bool { return n.syms[i].Value > addr }) - 1
	if i < 0 {
		return nil
	}
	s := &n.syms[i]
	if s.Size != 0 && addr >= s.Value+s.Size {
		return nil
	}
	return s
}

// afterCall reports whether ret is in the executable's code right after a
// call instruction: direct (e8 rel32) or indirect through a register or
// memory (ff /2 in its common encodings).
func (n *native) afterCall(ret uint64) bool {
	if n.symbol(ret-1) == nil {
		return false
	}
	code := n.code(ret-7, 7)
	if len(code) != 7 {
		return false
	}
	// A function's own address on the stack is usually a callback, unless
	// the function before it ends in a call that never returns.
	if s := n.symbol(ret); s != nil && s.Value == ret-n.bias {
		return code[2] == 0xe8
	}
	modrm := func(b byte) bool { return b&0x38 == 0x10 }
	switch {
	case code[2] == 0xe8: // call rel32
		return true
	case code[5] == 0xff && modrm(code[6]) && code[6]>>6 == 3: // call *%reg
		return true
	case code[4] == 0xff && modrm(code[5]) && code[5]>>6 == 1: // call *disp8(%reg)
		return true
	case code[1] == 0xff && modrm(code[2]) && (code[2]>>6 == 2 || code[2] == 0x15): // call *disp32(%reg), *rel32(%rip)
		return true
	}
	return false
}

// code reads n bytes of the executable's code at the run-time address addr.
func (n *native) code(addr uint64, size int) []byte {
	link := addr - n.bias
	for _, p := range n.f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 || link < p.Vaddr || link+uint64(size) > p.Vaddr+p.Filesz {
			continue
		}
		buf := make([]byte, size)
		if _, err := p.ReadAt(buf, int64(link-p.Vaddr)); err != nil {
			return nil
		}
		return buf
	}
	return nil
}

// scanStacks gives the threads that delve could not unwind (no DWARF, or
// stopped in a shared library) frames from the symbol table and a stack
// scan.
func (c *coreFile) scanStacks(threads []corepipe.Thread, exePath string) {
	var n *native
	regs := map[int]corefile.Thread{}
	for _, th := range c.Threads {
		regs[th.TID] = th
	}
	for i := range threads {
		th := &threads[i]
		if len(th.Frames) > 0 {
			continue
		}
		ct, ok := regs[th.ID]
		if !ok {
			continue
		}
		if n == nil {
			if n = c.newNative(exePath); n == nil {
				return
			}
			defer n.Close()
		}
		th.Frames = n.stack(ct.PC, ct.SP)
		if th.Function == "" {
			th.Function = th.Frames[0].Function
		}
	}
}
