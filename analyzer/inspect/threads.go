package inspect

import (
	"github.com/go-delve/delve/pkg/proc"

	"github.com/corepipe/corepipe"
)

// threadFrames caps the frames kept of one thread's stack: the innermost
// ones say where it stopped.
const threadFrames = 64

// dyingFrames gives the dying thread its own stack: for a signal the runtime
// did not turn into a panic, what the signal interrupted (a cgo fault's C
// frames, which no goroutine shows); otherwise the thread's whole stack,
// which for a throw on the system stack (stack overflow, thread exhaustion)
// is where the runtime gave up.
func dyingFrames(threads []corepipe.Thread, tid int, frames []proc.Stackframe, cr crash) {
	if cr.sigCtx != nil && cr.kind == corepipe.PanicKindSignal {
		frames = frames[cr.sigIdx+1:]
	}
	for i := range threads {
		if threads[i].ID == tid {
			threads[i].Frames = nativeFrames(frames[:min(len(frames), threadFrames)])
		}
	}
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
