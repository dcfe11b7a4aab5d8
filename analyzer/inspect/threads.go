package inspect

import (
	"github.com/go-delve/delve/pkg/proc"

	"github.com/corepipe/corepipe"
)

// threadFrames caps the frames kept of one thread's stack: the innermost
// ones say where it stopped.
const threadFrames = 64

// dyingFrames gives the dying thread its own stack: for a fatal error thrown
// on a system stack (thread exhaustion, a deadlock, a stack overflow's
// newstack), that stack as the runtime prints it first, "runtime stack:";
// for a signal the runtime did not turn into a panic, what the signal
// interrupted (a cgo fault's C frames, which no goroutine shows); otherwise
// the thread's whole stack.
func (a *analysis) dyingFrames(threads []corepipe.Thread, tid int, frames []proc.Stackframe, cr crash) {
	if st := a.runtimeStack(cr); st != nil {
		// Named as the runtime names them, inlined calls expanded: every
		// frame, the throw's included, is at a return address.
		frames = a.symbolize(st, true)
	} else if cr.sigCtx != nil && cr.kind == corepipe.PanicKindSignal {
		frames = frames[cr.sigIdx+1:]
	}
	for i := range threads {
		if threads[i].ID == tid {
			threads[i].Frames = nativeFrames(frames[:min(len(frames), threadFrames)])
		}
	}
}

// runtimeStack is the system stack a fatal error was thrown on, from the
// runtime.throw (or runtime.fatal) frame as dopanic_m prints it, without the
// signal-handler frames of the crash that followed; nil when the throw was
// on a goroutine's stack, which the goroutine shows. The runtime's
// traceback stops at the stack's first frame (runtime.mstart) or where
// the system stack was entered from a goroutine (runtime.morestack,
// runtime.systemstack, runtime.mcall); delve goes on into the goroutine's
// stack or the thread's clone, and leaves morestack out.
func (a *analysis) runtimeStack(cr crash) []proc.Stackframe {
	if cr.kind != corepipe.PanicKindFatal || len(cr.frames) == 0 || !cr.frames[0].SystemStack {
		return nil
	}
	for i, f := range cr.frames {
		switch callName(f) {
		case "runtime.mstart", "runtime.rt0_go", "runtime.mcall", "runtime.morestack", "runtime.morestack_noctxt", "runtime.systemstack":
			return cr.frames[:i+1]
		}
		if !f.SystemStack {
			st := cr.frames[:i:i]
			if i > 0 && callName(cr.frames[i-1]) == "runtime.newstack" {
				if ms, ok := a.caller(cr.frames[i-1]); ok {
					st = append(st, ms)
				}
			}
			return st
		}
	}
	return cr.frames
}

// caller is the frame f returns to, placed as the runtime places a caller:
// at the line of the call.
func (a *analysis) caller(f proc.Stackframe) (proc.Stackframe, bool) {
	if f.Ret == 0 {
		return proc.Stackframe{}, false
	}
	file, line, fn := a.t.BinInfo().PCToLine(f.Ret - 1)
	if fn == nil {
		return proc.Stackframe{}, false
	}
	loc := proc.Location{PC: f.Ret, File: file, Line: line, Fn: fn}
	return proc.Stackframe{Current: loc, Call: loc, SystemStack: true}, true
}

// nativeFrames converts a thread's frames, naming C functions as C does.
func nativeFrames(frames []proc.Stackframe) []corepipe.Frame {
	out := convert(frames)
	for i := range out {
		out[i].Function = cName(out[i].Function)
	}
	return out
}

// threadStacks unwinds every thread: in a C program the threads are the
// only stacks there are.
func threadStacks(t *proc.Target, threads []corepipe.Thread) {
	byID := map[int]proc.Thread{}
	for _, th := range t.ThreadList() {
		byID[th.ThreadID()] = th
	}
	for i := range threads {
		th, ok := byID[threads[i].ID]
		if !ok {
			continue
		}
		if frames, err := proc.ThreadStacktrace(t, th, threadFrames); err == nil {
			threads[i].Frames = nativeFrames(frames)
		}
	}
}
