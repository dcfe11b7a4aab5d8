package inspect

import (
	"encoding/binary"
	"strings"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/corepipe/corepipe"
)

// Goroutine states (runtime/runtime2.go).
const (
	gRunnable = 1
	gRunning  = 2
	gSyscall  = 3
	gWaiting  = 4
	gDead     = 6
	gLeaked   = 10
	gScan     = 0x1000
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
	frames, handler := a.fixInjected(g, scope, frames, depth)
	if handler >= 0 {
		// A goroutine running when a signal reached its thread (the
		// crash, or the SIGQUIT the runtime relays to every thread as it
		// dies) is printed from what the signal interrupted, not from
		// the handler.
		frames, retPC = frames[handler+1:], false
	}
	frames = a.symbolize(frames, retPC)
	if crashing {
		frames = cutCrash(frames)
	}
	return frames, nil
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

// symbols is what an analysis keeps of the runtime's function table.
type symbols struct {
	read    bool
	table   *funcTable                // nil when the core's table cannot be read
	inlined map[string]*proc.Function // functions of inlined calls, by name
}

func (a *analysis) funcTable() *funcTable {
	if !a.syms.read {
		a.syms.read = true
		ft, err := a.newFuncTable()
		if err != nil {
			a.opts.Logger.Warn("cannot read the runtime's function table; frames are named from DWARF", "err", err)
		}
		a.syms.table = ft
		a.syms.inlined = map[string]*proc.Function{}
	}
	return a.syms.table
}

// symbolize names every frame the way the runtime's traceback does, from
// the runtime's own function table (see funcTable): each physical frame
// delve unwound is expanded into the calls inlined at it, and every frame's
// function, file and line are looked up at the call instruction before the
// return address, except in a frame interrupted by a signal (below
// sigpanic, asyncPreempt or a signal handler, and the first frame of a
// stack that starts from a thread's registers, retPC false), which the
// runtime looks up at its exact PC. Frames outside the table (C code) keep
// delve's names.
func (a *analysis) symbolize(frames []proc.Stackframe, retPC bool) []proc.Stackframe {
	ft := a.funcTable()
	if ft == nil {
		return frames
	}
	var out []proc.Stackframe // nil while frames are renamed in place
	exact := !retPC
	group := 0 // where the inlined calls delve shows for frames[i] start
	for i, f := range frames {
		if f.Inlined {
			continue
		}
		src, ok := ft.lookup(f.Current.PC, exact)
		switch {
		case !ok || f.Current.Fn == nil:
			if out != nil {
				out = append(out, frames[group:i+1]...)
			}
		case out == nil && len(src) == i+1-group:
			// As many calls as delve found: the common case, no copy.
			for k, s := range src {
				frames[group+k] = a.syms.frame(f, s, k < len(src)-1)
			}
		default:
			if out == nil {
				out = append(make([]proc.Stackframe, 0, len(frames)+len(src)), frames[:group]...)
			}
			for k, s := range src {
				out = append(out, a.syms.frame(f, s, k < len(src)-1))
			}
		}
		group = i + 1
		switch callName(f) {
		case "runtime.sigpanic", "runtime.asyncPreempt", "runtime.debugCallV2", "runtime.sigtrampgo":
			exact = true
		case "runtime.sigtramp", "runtime.cgoSigtramp", "runtime.sigreturn__sigaction":
			// the signal trampoline between the handler and what it interrupted
		default:
			exact = false
		}
	}
	if out == nil {
		return frames
	}
	return append(out, frames[group:]...)
}

// frame is physical's frame for s, one of the calls the runtime prints
// for it.
func (s *symbols) frame(physical proc.Stackframe, src srcFrame, inlined bool) proc.Stackframe {
	c := physical
	c.Call = proc.Location{PC: physical.Current.PC, File: src.file, Line: src.line, Fn: physical.Current.Fn}
	c.Inlined = inlined
	if src.name != physical.Current.Fn.Name {
		c.Call.Fn = s.function(src.name, physical.Current.Fn)
	}
	return c
}

// function is the function of a call inlined in physical, by name.
func (s *symbols) function(name string, physical *proc.Function) *proc.Function {
	fn, ok := s.inlined[name]
	if !ok {
		fn = &proc.Function{Name: name, Entry: physical.Entry, End: physical.End}
		s.inlined[name] = fn
	}
	return fn
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
// a preemption) and below a signal handler (runtime.sigtrampgo, whose
// caller delve shows as the interrupted frame). Delve switches to
// frame-pointer unwinding once a frame looked regular, and a frameless
// function that was interrupted still holds its caller's frame pointer:
// delve then skips the caller (a nil dereference in leaf handle called by
// serve shows handle → main; SIGTRAP in runtime.Breakpoint loses the
// function that called it; a signal in syscall.RawSyscall6's frameless
// callee loses RawSyscall6). Starting again at the interrupted PC and SP
// makes delve use DWARF for that frame. Below runtime.cgocallback the
// unwind goes on in the Go code that called C (see there). It also returns
// the index of the outermost signal handler frame that interrupted g on its
// own stack, -1 when there is none.
func (a *analysis) fixInjected(g *proc.G, scope *proc.EvalScope, frames []proc.Stackframe, depth int) ([]proc.Stackframe, int) {
	if a.t.BinInfo().Arch.Name == "arm64" {
		return a.fixSigpanicLR(g, frames, depth), -1
	}
	var lo, hi uint64 // g's stack, read once a signal frame needs it
	handler := -1
	for i := 0; i+1 < len(frames); i++ {
		f := frames[i]
		if f.Inlined {
			continue
		}
		next := frames[i+1]
		pc, sp, bp := next.Current.PC, next.Regs.SP(), next.Regs.BP()
		switch callName(f) {
		case "runtime.sigpanic", "runtime.asyncPreempt":
		case "runtime.cgocallback":
			// A Go function called from C runs on the goroutine's stack
			// below the frames that called C: cgocallback pushed, as its
			// return address, the PC at which the goroutine left for C.
			// The runtime's traceback goes on from there (or from
			// runtime.goexit on a thread that C created), past no C frame;
			// delve instead crosses to the system stack at
			// g.m.g0.sched.sp to show crosscall2 and the C frames, and in
			// a crashed callback called from Go found garbage there and
			// stopped.
			if hi == 0 {
				lo, hi = a.evalUint(scope, "runtime.curg.stack.lo"), a.evalUint(scope, "runtime.curg.stack.hi")
			}
			cfa := uint64(f.Regs.CFA)
			if f.Ret == 0 || cfa < lo || cfa >= hi {
				continue
			}
			pc, sp, bp = f.Ret, cfa, 0 // no frame pointer: delve unwinds by DWARF
		case "runtime.sigtrampgo":
			// A signal that interrupted the system stack (a throw in
			// newstack, the crash machinery) is unwound by delve across
			// the switch back to the goroutine; restarting there as if on
			// the goroutine's stack would end the stack early.
			if hi == 0 {
				lo, hi = a.evalUint(scope, "runtime.curg.stack.lo"), a.evalUint(scope, "runtime.curg.stack.hi")
			}
			if sp := next.Regs.SP(); sp < lo || sp >= hi {
				continue
			}
			handler = i
		default:
			continue
		}
		rest, err := a.restart(g, pc, sp, bp, depth)
		if err != nil || len(rest) == 0 {
			a.opts.Logger.Warn("cannot unwind again below an injected call; keeping delve's frames", "goroutine", g.ID, "frame", callName(f), "err", err)
			continue
		}
		frames = append(frames[:i+1:i+1], rest...)
	}
	return frames, handler
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
		frames = append(frames[:j+1:j+1], rest...)
	}
	return frames
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
