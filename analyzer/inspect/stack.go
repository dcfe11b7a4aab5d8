package inspect

import (
	"encoding/binary"
	"strings"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/corepipe/corepipe"
)

// Goroutine states (runtime/runtime2.go).
const (
	gRunning = 2
	gSyscall = 3
	gWaiting = 4
	gLeaked  = 10
	gScan    = 0x1000
)

// frameSlack is how many frames beyond MaxFrames are unwound so that
// cutting the crash machinery off the top still leaves MaxFrames.
const frameSlack = 64

// maxWalk bounds the frame-pointer walk over a deep stack: a 1 GiB stack of
// 16-byte frames.
const maxWalk = 1 << 26

// unwind returns g's frames the way the runtime's traceback walks them:
// from g.syscallpc/sp for a goroutine in a syscall or cgo call, from the
// thread's registers for a running goroutine, from g.sched otherwise; for
// the crashing goroutine, from the frame that called the runtime's
// fatalpanic/fatalthrow (or from the signal context).
func (a *analysis) unwind(g *proc.G, scope *proc.EvalScope, crashing bool, depth int) ([]proc.Stackframe, error) {
	var (
		frames []proc.Stackframe
		err    error
		retPC  bool // frames[0].Current.PC is a return address
	)
	if g.Status&^gScan == gSyscall {
		if sp := a.evalUint(scope, "runtime.curg.syscallsp"); sp != 0 {
			pc := a.evalUint(scope, "runtime.curg.syscallpc")
			bp := a.evalUint(scope, "runtime.curg.syscallbp") // absent before Go 1.23: 0 makes delve use DWARF
			frames, err = a.restart(g, pc, sp, bp, depth)
			retPC = true
		}
	}
	if frames == nil && err == nil {
		frames, err = proc.GoroutineStacktrace(a.t, g, depth, 0)
		retPC = g.Thread == nil
	}
	if err != nil {
		return nil, err
	}
	if retPC {
		a.fixReturnLine(frames)
	}
	if crashing {
		frames = cutCrash(frames)
	}
	return a.fixInjected(g, frames, depth), nil
}

// restart unwinds g from the given registers instead of from its thread or
// g.sched. StacktraceG makes delve start from the G's saved registers, treat
// the PC as exact, and bypass its per-goroutine cache, which would otherwise
// keep this stack under the real goroutine's id.
func (a *analysis) restart(g *proc.G, pc, sp, bp uint64, depth int) ([]proc.Stackframe, error) {
	c := *g
	c.Thread = nil
	c.SystemStack = false
	c.PC, c.SP, c.BP = pc, sp, bp
	return proc.GoroutineStacktrace(a.t, &c, depth, proc.StacktraceG)
}

// fixReturnLine corrects the innermost frame of a stack that starts from a
// saved return address (g.sched.pc, g.syscallpc): delve looks up the line
// of the PC itself, the runtime that of the call instruction before it, so
// a call at the end of a line would otherwise show the next line.
func (a *analysis) fixReturnLine(frames []proc.Stackframe) {
	if len(frames) == 0 || frames[0].Current.Fn == nil {
		return
	}
	pc := frames[0].Current.PC
	if pc <= frames[0].Current.Fn.Entry {
		return
	}
	file, line, fn := a.t.BinInfo().PCToLine(pc - 1)
	if fn == frames[0].Current.Fn {
		frames[0].Call.File, frames[0].Call.Line = file, line
	}
}

// cutCrash removes what the dying goroutine did after it gave up: the
// runtime prints a panic or throw from the caller of fatalpanic/fatalthrow,
// a fatal signal from the signal context, which delve shows right after the
// outermost runtime.sigtrampgo frame.
func cutCrash(frames []proc.Stackframe) []proc.Stackframe {
	cut := -1
	for i, f := range frames {
		switch callName(f) {
		case "runtime.fatalpanic", "runtime.fatalthrow":
			cut = i
		}
	}
	if cut < 0 {
		for i, f := range frames {
			if callName(f) == "runtime.sigtrampgo" {
				cut = i
			}
		}
	}
	frames = frames[cut+1:]
	// A goroutine whose stack could not grow threw from newstack, on the
	// system stack; the runtime prints it from the function that asked for
	// more stack.
	for i, f := range frames {
		switch n := callName(f); {
		case n == "runtime.morestack" || n == "runtime.morestack_noctxt":
			return frames[i+1:]
		case n == "runtime.newstack":
			if i+1 < len(frames) && !strings.HasPrefix(callName(frames[i+1]), "runtime.morestack") {
				return frames[i+1:]
			}
		case !strings.HasPrefix(n, "runtime."):
			return frames
		}
	}
	return frames
}

// fixInjected re-unwinds the frames below a call that the runtime injected
// into a goroutine (runtime.sigpanic for a fault, runtime.asyncPreempt for
// a preemption). Delve switches to frame-pointer unwinding once a frame
// looked regular, and a frameless leaf function that faulted still holds
// its caller's frame pointer: delve then skips the caller (a nil
// dereference in leaf handle called by serve shows handle → main). Starting
// again at the interrupted PC and SP makes delve use DWARF for that frame.
func (a *analysis) fixInjected(g *proc.G, frames []proc.Stackframe, depth int) []proc.Stackframe {
	if a.t.BinInfo().Arch.Name == "arm64" {
		return a.fixSigpanicLR(g, frames, depth)
	}
	for i := 0; i+1 < len(frames); i++ {
		f := frames[i]
		if f.Inlined {
			continue
		}
		switch callName(f) {
		case "runtime.sigpanic", "runtime.asyncPreempt":
		default:
			continue
		}
		next := frames[i+1]
		rest, err := a.restart(g, next.Current.PC, next.Regs.SP(), next.Regs.BP(), depth)
		if err != nil || len(rest) == 0 {
			a.opts.Logger.Warn("cannot unwind again below an injected call; keeping delve's frames", "goroutine", g.ID, "frame", callName(f), "err", err)
			continue
		}
		frames = append(frames[:i+1:i+1], rest...)
	}
	return frames
}

// fixSigpanicLR is fixInjected for arm64, where the return address of a
// function that faulted is in the link register, not on the stack. The
// signal handler pushes that register 16 bytes below the faulting
// function's SP before it makes the function look as if it called sigpanic.
// Delve reads a frameless leaf's return address at its SP instead, which is
// its caller's own saved one: a nil dereference in leaf handle called by
// serve shows handle → main. The pushed register is the one to unwind from.
func (a *analysis) fixSigpanicLR(g *proc.G, frames []proc.Stackframe, depth int) []proc.Stackframe {
	for i := 0; i+1 < len(frames); i++ {
		if frames[i].Inlined || callName(frames[i]) != "runtime.sigpanic" {
			continue
		}
		j := i + 1
		for j+1 < len(frames) && frames[j].Inlined {
			j++
		}
		leaf := frames[j]
		sp := leaf.Regs.SP()
		if uint64(leaf.Regs.CFA) != sp || sp < 16 {
			continue // a function with a frame saved its return address where delve reads it
		}
		buf := make([]byte, 8)
		if _, err := a.t.Memory().ReadMemory(buf, sp-16); err != nil {
			continue
		}
		rest, err := a.restart(g, binary.LittleEndian.Uint64(buf), sp, leaf.Regs.BP(), depth)
		if err != nil || len(rest) == 0 {
			a.opts.Logger.Warn("cannot unwind from the link register sigpanic saved; keeping delve's frames", "goroutine", g.ID, "err", err)
			continue
		}
		a.fixReturnLine(rest)
		frames = append(frames[:j+1:j+1], rest...)
	}
	return frames
}

// capFrames converts frames to the report's, keeping at most max: the
// innermost half and the outermost half. When delve stopped at the depth
// limit the outermost frames are found by walking the frame-pointer chain
// from the deepest frame unwound, which costs two words per frame instead
// of delve's DWARF machinery, and unwinding the last ones properly.
func (a *analysis) capFrames(g *proc.G, frames []proc.Stackframe, max int) ([]corepipe.Frame, int) {
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
	tail, skipped := a.outerFrames(g, last, outer)
	kept := append(convert(frames[:inner]), convert(tail)...)
	return kept, len(frames) - inner + skipped
}

// outerFrames returns the outermost n frames below from, and how many
// physical frames between them were skipped.
func (a *analysis) outerFrames(g *proc.G, from proc.Stackframe, n int) ([]proc.Stackframe, int) {
	type regs struct{ pc, sp, bp uint64 }
	ring := make([]regs, n)
	walked := 0
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
	frames, err := a.restart(g, start.pc, start.sp, start.bp, n+frameSlack)
	if err != nil {
		a.opts.Logger.Warn("cannot unwind the outermost frames", "goroutine", g.ID, "err", err)
		return nil, walked
	}
	a.fixReturnLine(frames)
	if len(frames) > n {
		frames = frames[len(frames)-n:]
	}
	return frames, max(0, walked-n)
}

func convert(frames []proc.Stackframe) []corepipe.Frame {
	out := make([]corepipe.Frame, 0, len(frames))
	for _, f := range frames {
		if f.Current.Fn == nil {
			continue // a frame delve could not place; the runtime prints none
		}
		out = append(out, corepipe.Frame{
			Function: funcNameForPrint(callName(f)),
			File:     f.Call.File,
			Line:     f.Call.Line,
			PC:       hex(f.Current.PC),
		})
	}
	return out
}

// callName is the name of the function a frame is in, inlined calls
// included.
func callName(f proc.Stackframe) string {
	if f.Call.Fn != nil {
		return f.Call.Fn.Name
	}
	if f.Current.Fn != nil {
		return f.Current.Fn.Name
	}
	return "?"
}

// funcNameForPrint spells a function the way the runtime's traceback does:
// gopanic is "panic", and type arguments of generic functions are "...".
func funcNameForPrint(name string) string {
	if name == "runtime.gopanic" {
		return "panic"
	}
	return corepipe.ElideTypeArgs(name)
}
