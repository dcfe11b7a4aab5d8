package inspect

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"strings"
)

// Delve finds a package variable named in an expression by comparing the
// name with every package variable of the program, building a string for
// each comparison: on a big binary (MinIO has hundreds of thousands) one
// evaluation of runtime.sched.maxmcount costs a fifth of a second and as
// much garbage. The runtime variables the analysis reads are found once
// instead, in the executable's symbol table, and read through a type cast
// to their address, which delve resolves from its map of types.

// runtimeGlobals are the runtime's variables the analysis reads, with the
// type each is read as; an array's is its element's, the length coming from
// the symbol's size.
var runtimeGlobals = map[string]struct {
	typ   string
	array bool
}{
	"runtime.allglen":           {typ: "uintptr"},
	"runtime.allgs":             {typ: "[]*runtime.g"},
	"runtime.gomaxprocs":        {typ: "int32"},
	"runtime.sched":             {typ: "runtime.schedt"},
	"runtime.gcController":      {typ: "runtime.gcControllerState"},
	"runtime.firstmoduledata":   {typ: "runtime.moduledata"},
	"runtime.waitReasonStrings": {typ: "string", array: true},
	"runtime.gStatusStrings":    {typ: "string", array: true},
	"runtime.sigtable":          {typ: "runtime.sigTabT", array: true},
}

// globalSym is where a variable of runtimeGlobals is in the target.
type globalSym struct{ addr, size uint64 }

// maxSymtab bounds the symbol table read: MinIO's is a few MiB.
const maxSymtab = 256 << 20

// readGlobalSyms finds the symbols of runtimeGlobals in the ELF file at
// path, relocated by base. A file without a symbol table yields none, and
// the expressions go to delve's own lookup.
func readGlobalSyms(path string, base uint64) (map[string]globalSym, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	symtab := f.SectionByType(elf.SHT_SYMTAB)
	if symtab == nil || symtab.Link == 0 || int(symtab.Link) >= len(f.Sections) || f.Class != elf.ELFCLASS64 {
		return nil, nil
	}
	strtab := f.Sections[symtab.Link]
	if symtab.Size > maxSymtab || strtab.Size > maxSymtab {
		return nil, fmt.Errorf("symbol table of %d bytes", symtab.Size)
	}
	strs, err := strtab.Data()
	if err != nil {
		return nil, fmt.Errorf("symbol names: %w", err)
	}
	// Only object symbols with a name of the runtime package are wanted:
	// look for names by their bytes, allocating nothing per symbol.
	want := map[string]bool{}
	for name := range runtimeGlobals {
		want[name] = true
	}
	const symSize = 24 // Elf64_Sym
	out := map[string]globalSym{}
	r := io.NewSectionReader(symtab, 0, int64(symtab.Size))
	buf := make([]byte, symSize*4096)
	bo := f.ByteOrder
	for {
		n, err := io.ReadFull(r, buf)
		for off := 0; off+symSize <= n; off += symSize {
			s := buf[off : off+symSize]
			if elf.ST_TYPE(s[4]) != elf.STT_OBJECT {
				continue
			}
			name := uint64(bo.Uint32(s))
			if name >= uint64(len(strs)) || !bytes.HasPrefix(strs[name:], []byte("runtime.")) {
				continue
			}
			end := bytes.IndexByte(strs[name:], 0)
			if end < 0 || !want[string(strs[name:name+uint64(end)])] {
				continue
			}
			out[string(strs[name:name+uint64(end)])] = globalSym{addr: bo.Uint64(s[8:]) + base, size: bo.Uint64(s[16:])}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("symbol table: %w", err)
		}
	}
}

// globalExpr rewrites an expression on a variable of runtimeGlobals
// ("runtime.sched.maxmcount", "runtime.waitReasonStrings[3]") into one on
// its address ("(*(*runtime.schedt)(0x…)).maxmcount"); any other expression,
// or one on a variable the symbol table lacks, is returned as it is.
func (a *analysis) globalExpr(expr string) string {
	const pkg = "runtime."
	if !strings.HasPrefix(expr, pkg) {
		return expr
	}
	name, rest := expr, ""
	if i := strings.IndexAny(expr[len(pkg):], ".["); i >= 0 {
		name, rest = expr[:len(pkg)+i], expr[len(pkg)+i:]
	}
	g, ok := runtimeGlobals[name]
	if !ok {
		return expr
	}
	sym, found := a.symbols()[name]
	if !found || sym.addr == 0 {
		return expr
	}
	if !g.array {
		return fmt.Sprintf("(*(*%s)(%#x))%s", g.typ, sym.addr, rest)
	}
	elem := uint64(2 * a.t.BinInfo().Arch.PtrSize()) // a string header
	if g.typ != "string" {
		t, err := a.t.BinInfo().FindType(g.typ)
		if err != nil || t.Size() <= 0 {
			return expr
		}
		elem = uint64(t.Size())
	}
	if sym.size < elem {
		return expr
	}
	return fmt.Sprintf("(*(*[%d]%s)(%#x))%s", sym.size/elem, g.typ, sym.addr, rest)
}

// symbols returns where the variables of runtimeGlobals are, read on first
// use.
func (a *analysis) symbols() map[string]globalSym {
	if a.globalSyms == nil {
		a.globalSyms = map[string]globalSym{}
		bi := a.t.BinInfo()
		if len(bi.Images) > 0 {
			syms, err := readGlobalSyms(bi.Images[0].Path, bi.Images[0].StaticBase)
			if err != nil {
				a.opts.Logger.Warn("cannot read the executable's symbol table; runtime variables are looked up by delve", "err", err)
			}
			for k, v := range syms {
				a.globalSyms[k] = v
			}
		}
	}
	return a.globalSyms
}
