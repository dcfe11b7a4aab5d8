package inspect

import (
	"encoding/binary"
	"hash/maphash"
	"slices"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/corepipe/corepipe"
)

// Most goroutines of a big core are parked by the scheduler, and their
// stacks are walked here the way the runtime's own unwinder walks them from
// g.sched: each frame's size from the function table's pcsp table, the
// return address just above it. Delve's unwinder, which reads DWARF call
// frame information, line tables and closure variables for every frame,
// cost three quarters of the analysis of 100 000 goroutines. Anything this
// walk does not handle as delve does — a signal or preemption frame, a
// switch of stacks, a function that writes SP, code outside the table, a
// stack deeper than asked for — is left to delve.

// Function flags (the runtime's abi.FuncFlag).
const (
	funcFlagTopFrame = 1 << 0 // the outermost frame of a stack (goexit, mstart, …)
	funcFlagSPWrite  = 1 << 1 // writes SP other than by a constant: no pcsp to trust
)

// schedDepth is how many physical frames the walk follows before it leaves
// a deep stack to delve, which keeps its ends.
const schedDepth = 64

// schedSpecial are functions whose frames delve and this package unwind
// with care (the signal and preemption frames fixInjected redoes, the
// switches between a goroutine's and the system stack, cgo's crossings):
// a stack holding one goes to delve.
var schedSpecial = map[string]bool{
	"runtime.sigpanic": true, "runtime.asyncPreempt": true, "runtime.asyncPreempt2": true,
	"runtime.debugCallV2": true, "runtime.sigtrampgo": true, "runtime.sigtramp": true,
	"runtime.cgoSigtramp": true, "runtime.sigreturn__sigaction": true,
	"runtime.cgocallback": true, "runtime.cgocall": true, "runtime.asmcgocall": true, "crosscall2": true,
	"runtime.morestack": true, "runtime.morestack_noctxt": true, "runtime.newstack": true,
	"runtime.systemstack": true, "runtime.systemstack_switch": true, "runtime.mcall": true,
	"runtime.mstart": true, "runtime.mstart0": true, "runtime.rt0_go": true, "runtime.gogo": true,
	"runtime.gopanic": true, "runtime.goexit1": true,
}

// schedStep is what the walk needs of the function at a pc.
type schedStep struct {
	fn    *proc.Function
	delta uint64 // the frame's size below the return address (pcsp)
	top   bool   // runtime.goexit: the stack ends here
	ok    bool
}

// schedWalk is the state of the walk, kept across goroutines: the steps by
// pc, and each stack's frames by the pcs of its physical frames, so that
// goroutines parked in the same place are named once.
type schedWalk struct {
	steps  map[uint64]schedStep
	seed   maphash.Seed
	stacks map[uint64]schedStack
	pcs    []uint64 // of the goroutine being walked
	key    []byte   // its pcs, hashed
	window stackWindow
}

type schedStack struct {
	pcs    []uint64
	frames []corepipe.Frame
}

// schedFrames returns g's frames as the report has them, walked from
// g.sched, or false when the walk leaves g to delve.
func (a *analysis) schedFrames(g *proc.G, depth int) ([]corepipe.Frame, bool) {
	ft := a.funcTable()
	if ft == nil || a.t.BinInfo().Arch.Name != "amd64" || g.Thread != nil || g.SystemStack || g.PC == 0 || g.SP == 0 {
		return nil, false
	}
	// Neither running nor in a system call: g.sched holds where the
	// goroutine will resume.
	if st := g.Status &^ gScan; st != gRunnable && st != gWaiting {
		return nil, false
	}
	w := &a.sched
	if w.steps == nil {
		w.steps, w.stacks, w.seed = map[uint64]schedStep{}, map[uint64]schedStack{}, maphash.MakeSeed()
		w.window.mem = a.t.Memory()
	}
	w.pcs = w.pcs[:0]
	pc, sp := g.PC, g.SP
	for {
		if len(w.pcs) >= depth {
			return nil, false
		}
		step := a.schedStep(ft, pc)
		if !step.ok {
			return nil, false
		}
		w.pcs = append(w.pcs, pc)
		if step.top {
			break
		}
		fp := sp + step.delta + 8 // the return address the call pushed
		ret, ok := w.window.word(fp - 8)
		if !ok || ret == 0 {
			return nil, false
		}
		pc, sp = ret, fp
	}
	w.key = w.key[:0]
	for _, pc := range w.pcs {
		w.key = binary.LittleEndian.AppendUint64(w.key, pc)
	}
	key := maphash.Bytes(w.seed, w.key)
	if s, ok := w.stacks[key]; ok && slices.Equal(s.pcs, w.pcs) {
		return s.frames, true
	}
	frames := make([]proc.Stackframe, len(w.pcs))
	for i, pc := range w.pcs {
		frames[i] = proc.Stackframe{Current: proc.Location{PC: pc, Fn: w.steps[pc].fn}}
	}
	frames = a.symbolize(frames, true)
	for _, f := range frames {
		if f.Call.Fn == nil {
			return nil, false // outside the runtime's table: delve names it
		}
	}
	if len(frames) > a.opts.MaxFrames {
		return nil, false // keepEnds cuts it
	}
	out := a.share.frames(convert(frames))
	w.stacks[key] = schedStack{pcs: slices.Clone(w.pcs), frames: out}
	return out, true
}

// schedStep reads what the walk needs of the function at pc, once per pc.
func (a *analysis) schedStep(ft *funcTable, pc uint64) schedStep {
	w := &a.sched
	if s, ok := w.steps[pc]; ok {
		return s
	}
	var s schedStep
	if f, err := ft.find(pc); err == nil && pc >= ft.minpc && pc < ft.maxpc {
		name, err := ft.funcName(f.nameOff)
		s.fn = a.t.BinInfo().PCToFunc(pc)
		switch {
		case err != nil || s.fn == nil || s.fn.Name != name || schedSpecial[name] || f.flag&funcFlagSPWrite != 0:
		case f.flag&funcFlagTopFrame != 0:
			s.top, s.ok = true, name == "runtime.goexit"
		default:
			if d, err := ft.pcvalue(f, f.pcsp, pc); err == nil && d >= 0 {
				s.delta, s.ok = uint64(d), true
			}
		}
	}
	w.steps[pc] = s
	return s
}

// stackWindow reads words of a stack through a window of it, one read of
// the core for the frames of most goroutines.
type stackWindow struct {
	mem  proc.MemoryReader
	base uint64
	buf  []byte
}

const stackWindowSize = 4 << 10

func (w *stackWindow) word(addr uint64) (uint64, bool) {
	if len(w.buf) >= 8 && addr >= w.base && addr-w.base <= uint64(len(w.buf)-8) {
		return binary.LittleEndian.Uint64(w.buf[addr-w.base:]), true
	}
	if cap(w.buf) < stackWindowSize {
		w.buf = make([]byte, stackWindowSize)
	}
	// The window may run past the end of the stack's mapping: smaller
	// reads then.
	for n := stackWindowSize; n >= 8; n /= 4 {
		w.buf = w.buf[:n]
		if _, err := w.mem.ReadMemory(w.buf, addr); err == nil {
			w.base = addr
			return binary.LittleEndian.Uint64(w.buf), true
		}
	}
	w.buf = w.buf[:0]
	return 0, false
}
