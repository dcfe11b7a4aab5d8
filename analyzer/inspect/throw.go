package inspect

import (
	"encoding/binary"

	"github.com/go-delve/delve/pkg/proc"
)

// maxThrowMessage bounds the fatal error text read from a core.
const maxThrowMessage = 4096

// throwMessage finds the runtime.throw or runtime.fatal frame in frames and
// returns the message it was called with, and the frame.
func (a *analysis) throwMessage(g *proc.G, frames []proc.Stackframe) (string, *proc.Stackframe, bool) {
	for i, f := range frames {
		n := callName(f)
		if n != "runtime.throw" && n != "runtime.fatal" {
			continue
		}
		scope := proc.FrameToScope(a.t, a.t.Memory(), g, 0, frames[i:]...)
		if s := a.evalString(scope, "s"); s != "" {
			return s, &frames[i], true
		}
		return a.closureString(f, n+".func1"), &frames[i], true
	}
	return "", nil, false
}

// closureString reads the string captured by the closure fn that a frame
// built on its own stack. The register-based calling convention leaves s
// without a DWARF location once throw/fatal has called on, but both pass s
// to systemstack in a stack-allocated closure {fn, s.ptr, s.len}: the word
// holding fn's entry address locates it.
func (a *analysis) closureString(f proc.Stackframe, fn string) string {
	bi := a.t.BinInfo()
	fns := bi.LookupFunc()[fn]
	if len(fns) == 0 {
		return ""
	}
	entry := fns[0].Entry
	sp, cfa := f.Regs.SP(), uint64(f.Regs.CFA)
	if cfa <= sp || cfa-sp > 4096 {
		return ""
	}
	frame := make([]byte, cfa-sp)
	if _, err := a.t.Memory().ReadMemory(frame, sp); err != nil {
		return ""
	}
	le := binary.LittleEndian
	for off := 0; off+24 <= len(frame); off += 8 {
		if le.Uint64(frame[off:]) != entry {
			continue
		}
		ptr, n := le.Uint64(frame[off+8:]), le.Uint64(frame[off+16:])
		if n == 0 || n > maxThrowMessage {
			return ""
		}
		buf := make([]byte, n)
		if _, err := a.t.Memory().ReadMemory(buf, ptr); err != nil {
			return ""
		}
		return string(buf)
	}
	return ""
}
