package inspect

import (
	"encoding/binary"
	"strings"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/corepipe/corepipe"
)

// A goroutine deeper than MaxFrames (a stack overflow has millions of
// frames) keeps its innermost and outermost halves, as the runtime keeps
// its innermost and outermost 50, and counts the rest in frames_elided, in
// the frames the runtime prints: inlined calls included.

// maxOuterDepth bounds how many frames are unwound to reach the bottom of a
// deep stack from the outermost physical frames a frame-pointer walk found:
// inlined calls make more frames than physical ones.
const maxOuterDepth = 1 << 16

// keepEnds converts frames to the report's, keeping at most max: the
// innermost half and the outermost half. When delve stopped at the depth
// limit the outermost frames are found by walking the frame-pointer chain
// from the deepest frame unwound, which costs two words per frame instead
// of delve's DWARF machinery, and unwinding the last ones properly.
func (a *analysis) keepEnds(g *proc.G, frames []proc.Stackframe, max int) ([]corepipe.Frame, int) {
	if len(frames) <= max {
		return convert(frames), 0
	}
	inner := max / 2
	outer := max - inner
	last := frames[len(frames)-1]
	if last.Bottom || last.Err != nil {
		kept := append(convert(frames[:inner]), convert(frames[len(frames)-outer:])...)
		return kept, len(frames) - max
	}
	tail, below := a.bottomFrames(g, last, outer)
	kept := append(convert(frames[:inner]), convert(tail)...)
	return kept, len(frames) + below - len(kept)
}

// bottomFrames returns the outermost n frames below from (a physical frame),
// and how many frames, inlined calls included, there are below from in all.
func (a *analysis) bottomFrames(g *proc.G, from proc.Stackframe, n int) ([]proc.Stackframe, int) {
	type regs struct{ pc, sp, bp uint64 }
	ring := make([]regs, n)
	walked, below := 0, 0
	mem := a.t.Memory()
	buf := make([]byte, 16)
	bp := from.Regs.BP()
	for walked < maxWalk && bp != 0 {
		if _, err := mem.ReadMemory(buf, bp); err != nil {
			break
		}
		saved, ret := binary.LittleEndian.Uint64(buf), binary.LittleEndian.Uint64(buf[8:])
		if ret == 0 {
			break
		}
		ring[walked%n] = regs{pc: ret, sp: bp + 16, bp: saved}
		walked++
		below += a.callsAt(ret)
		if saved <= bp {
			break
		}
		bp = saved
	}
	if walked == 0 {
		return nil, 0
	}
	start := ring[0]
	if walked > n {
		start = ring[walked%n]
	}
	// n physical frames hold n frames or more: unwind until the bottom.
	var frames []proc.Stackframe
	for depth := n + frameSlack; ; depth *= 2 {
		f, err := a.restart(g, start.pc, start.sp, start.bp, depth)
		if err != nil {
			a.opts.Logger.Warn("cannot unwind the outermost frames", "goroutine", g.ID, "err", err)
			return nil, below
		}
		frames = f
		if len(f) < depth || f[len(f)-1].Bottom || depth >= maxOuterDepth {
			break
		}
	}
	frames = a.symbolize(frames, true)
	if len(frames) > n {
		frames = frames[len(frames)-n:]
	}
	return frames, below
}

// callsAt is how many frames the runtime prints for a physical frame that
// returns to ret: one, and one more for each call inlined there.
func (a *analysis) callsAt(ret uint64) int {
	if ft := a.funcTable(); ft != nil {
		if src, ok := ft.lookup(ret, false); ok {
			return len(src)
		}
	}
	return 1
}

// overflowed reports whether the dying thread threw because a goroutine's
// stack could not grow: runtime.newstack on the runtime stack.
func overflowed(cr crash) bool {
	if cr.kind != corepipe.PanicKindFatal {
		return false
	}
	for _, f := range cr.frames {
		switch n := callName(f); {
		case n == "runtime.newstack":
			return true
		case !strings.HasPrefix(n, "runtime."):
			return false
		}
	}
	return false
}

// unwindOverflowed unwinds the goroutine whose stack could not grow from
// the context runtime.morestack saved in g.sched, as the runtime's
// traceback does. The function that called morestack is still in its
// prologue and has not pushed its frame pointer: delve, which reaches it
// from the system stack already trusting frame pointers, would take its
// caller's for its own and leave the caller out.
func (a *analysis) unwindOverflowed(g *proc.G, scope *proc.EvalScope, depth int) ([]proc.Stackframe, error) {
	pc, sp := a.evalUint(scope, "runtime.curg.sched.pc"), a.evalUint(scope, "runtime.curg.sched.sp")
	if pc == 0 || sp == 0 {
		return a.unwind(g, scope, true, depth)
	}
	frames, err := a.restart(g, pc, sp, a.evalUint(scope, "runtime.curg.sched.bp"), depth)
	if err != nil {
		return nil, err
	}
	return a.symbolize(frames, true), nil
}
