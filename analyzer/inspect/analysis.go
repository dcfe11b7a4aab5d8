package inspect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"go/constant"
	"go/version"
	"math"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/corepipe/corepipe"
)

// pageSize is how many goroutines are read between cache flushes: delve
// caches every goroutine and stack it reads, which on a core with 100 000
// goroutines costs more than a GiB.
const pageSize = 1000

// maxAllg clamps runtime.allglen, which a damaged core can set to anything.
const maxAllg = 1 << 24

// deadExtra is the status string of Go 1.26's _Gdeadextra: a dead
// goroutine kept on an extra M for cgo callbacks, which the runtime's
// traceback skips like any dead one.
const deadExtra = "waiting for cgo callback"

// threadDepth bounds the unwind of the dying thread, used to tell what
// killed the process; the runtime's machinery is at its top.
const threadDepth = 256

// Small load limits: only runtime fields and panic values are evaluated.
var (
	loadScalar = proc.LoadConfig{MaxStringLen: 256}
	loadValue  = proc.LoadConfig{FollowPointers: true, MaxVariableRecurse: 1, MaxStringLen: 64 << 10, MaxStructFields: -1}
)

// analysis holds the state of one Inspect call on a Go program.
type analysis struct {
	ctx  context.Context
	t    *proc.Target
	opts Options

	global      *proc.EvalScope      // for runtime globals
	globalSyms  map[string]globalSym // where runtimeGlobals are, read on first use
	shortFloats bool                 // the target prints floats as strconv's 'g' (Go 1.26 on)
	statuses    map[uint64]string
	reasons     map[int64]string

	overflow bool     // the crashing goroutine's stack could not grow
	coreSize int64    // bounds runtime.allglen
	syms     symbols  // the runtime's own function table, read on first use
	share    *sharing // identical stacks stored once
	sched    schedWalk
	gLayout  *gLayout // runtime.g's fields, nil when delve must read every g
	listed   struct{ direct, delve int }
	gBuf     []byte
	creators map[uint64]string // created-by functions, by the go statement's pc

	// reopen opens a second, independent view of the same core for reading
	// goroutines in parallel, with its close; nil when there is none.
	reopen func() (*analysis, func(), error)
}

// crash is how the dying thread gave up.
type crash struct {
	kind     string            // corepipe.PanicKind*, "" when unknown
	frames   []proc.Stackframe // the dying thread's frames from the runtime's entry point
	sigtramp *proc.Stackframe  // the signal handler frame of the original signal
	sigCtx   *proc.Stackframe  // the frame the original signal interrupted
	sigIdx   int
}

func newAnalysis(ctx context.Context, t *proc.Target, opts Options, coreSize int64) *analysis {
	return &analysis{ctx: ctx, t: t, opts: opts, statuses: map[uint64]string{}, reasons: map[int64]string{},
		coreSize: coreSize, share: newSharing(), creators: map[uint64]string{}}
}

// scopeFrom prepares b, a second view of a's core, to read goroutines as a
// does.
func (b *analysis) scopeFrom(a *analysis) error {
	dying := b.t.CurrentThread()
	frames, err := proc.ThreadStacktrace(b.t, dying, 1)
	if err != nil || len(frames) == 0 {
		return fmt.Errorf("unwind the dying thread %d: %v", dying.ThreadID(), err)
	}
	b.global = proc.FrameToScope(b.t, b.t.Memory(), nil, dying.ThreadID(), frames[0])
	b.shortFloats = a.shortFloats
	b.globalSyms = a.globalSyms
	return nil
}

func (a *analysis) run(r *corepipe.Report) error {
	t := a.t
	a.shortFloats = r.Go != nil && version.Compare(version.Lang(r.Go.Version), "go1.26") >= 0
	r.Threads = threads(t)
	dying := t.CurrentThread()
	dframes, err := proc.ThreadStacktrace(t, dying, threadDepth)
	if err != nil || len(dframes) == 0 {
		return fmt.Errorf("unwind the dying thread %d: %v", dying.ThreadID(), err)
	}
	a.global = proc.FrameToScope(t, t.Memory(), nil, dying.ThreadID(), dframes[0])
	cr := classify(dframes)
	a.overflow = overflowed(cr)
	r.Runtime = a.runtimeState()
	a.dyingFrames(r.Threads, dying.ThreadID(), dframes, cr)

	var crashFrames []proc.Stackframe
	g, _ := proc.GetG(dying)
	if g != nil && g.ID != 0 {
		cg, frames, err := a.goroutine(g, true)
		if err != nil {
			return fmt.Errorf("crashing goroutine %d: %w", g.ID, err)
		}
		crashFrames = frames
		r.CrashingGoroutine = g.ID
		r.Goroutines = append(r.Goroutines, cg)
	}
	a.fault(r, g, crashFrames, cr)
	a.panicInfo(r, g, crashFrames, cr)
	if err := a.goroutines(r, g); err != nil {
		if a.ctx.Err() != nil {
			return err
		}
		// A stripped executable (-ldflags=-s -w) has neither the symbol of
		// runtime.allgs nor the types of the runtime's structures: what
		// the threads show is still worth a report.
		a.opts.Logger.Warn("cannot list the goroutines; reporting what the threads show", "err", err)
		r.Diagnosis = append(r.Diagnosis, corepipe.Diagnosis{
			Code: "goroutines_unreadable", Severity: "warning",
			Message:  "the goroutines could not be read from the core (a stripped executable, built with -ldflags=-s -w, lacks the symbols and types that find them): the report holds what the OS threads show",
			Evidence: err.Error(),
		})
	}
	cFunc := ""
	if cr.kind == corepipe.PanicKindSignal && cr.sigCtx != nil && strings.HasPrefix(callName(*cr.sigCtx), "C.") {
		cFunc = cName(callName(*cr.sigCtx))
	}
	r.Title = corepipe.Title(r, cFunc)
	return nil
}

// classify reads from the dying thread's stack what killed the process.
func classify(frames []proc.Stackframe) crash {
	var cr crash
	for i, f := range frames {
		switch callName(f) {
		case "runtime.fatalpanic":
			cr.kind = corepipe.PanicKindPanic
			cr.frames = frames[i+1:]
		case "runtime.fatalthrow":
			cr.kind = corepipe.PanicKindFatal
			cr.frames = frames[i+1:]
		case "runtime.sigtrampgo":
			// The runtime re-raises the signal it dies of from
			// runtime.raise: that handler frame is not the original one.
			if i+1 < len(frames) && callName(frames[i+1]) != "runtime.raise" {
				cr.sigtramp, cr.sigCtx, cr.sigIdx = &frames[i], &frames[i+1], i
			}
		}
	}
	if cr.kind == "" && cr.sigtramp != nil {
		cr.kind = corepipe.PanicKindSignal
		cr.frames = frames[cr.sigIdx+1:]
	}
	return cr
}

// goroutine builds the report of g and returns its frames.
func (a *analysis) goroutine(g *proc.G, crashing bool) (corepipe.Goroutine, []proc.Stackframe, error) {
	scope := proc.FrameToScope(a.t, a.t.Memory(), g, 0, proc.Stackframe{})
	rg := corepipe.Goroutine{ID: g.ID, Status: a.status(g), Labels: g.Labels()}
	if st := g.Status &^ gScan; (st == gWaiting || st == gLeaked) && g.WaitReason != 0 {
		rg.WaitReason = rg.Status
	}
	if g.Thread != nil {
		rg.ThreadID = g.Thread.ThreadID()
	}
	if g.GoPC != 0 && g.ID != 1 {
		rg.CreatedBy = a.share.creator(a.createdBy(g, scope))
	}
	if !crashing {
		if frames, ok := a.schedFrames(g, schedDepth); ok {
			rg.Frames = frames
			return rg, nil, nil
		}
	}
	depth := a.opts.MaxFrames + frameSlack
	if !crashing {
		depth = min(depth, shallowDepth)
	}
	unwind := a.unwind
	if crashing && a.overflow {
		unwind = func(g *proc.G, scope *proc.EvalScope, _ bool, depth int) ([]proc.Stackframe, error) {
			return a.unwindOverflowed(g, scope, depth)
		}
	}
	frames, err := unwind(g, scope, crashing, depth)
	if err == nil && len(frames) >= depth && depth < a.opts.MaxFrames+frameSlack {
		frames, err = unwind(g, scope, crashing, a.opts.MaxFrames+frameSlack)
	}
	if err != nil {
		return rg, nil, err
	}
	rg.Frames, rg.FramesElided = a.keepEnds(g, frames, a.opts.MaxFrames)
	rg.Frames = a.share.frames(rg.Frames)
	return rg, frames, nil
}

// status is the goroutine status the runtime prints: the wait reason for a
// waiting goroutine, else the name of its state, both read from the
// target's own tables so that they follow its Go version.
func (a *analysis) status(g *proc.G) string {
	st := g.Status &^ gScan
	if (st == gWaiting || st == gLeaked) && g.WaitReason != 0 {
		if s, ok := a.reasons[g.WaitReason]; ok {
			return s
		}
		s := a.evalString(a.global, fmt.Sprintf("runtime.waitReasonStrings[%d]", g.WaitReason))
		if s == "" {
			s = "waiting"
		}
		a.reasons[g.WaitReason] = s
		return s
	}
	if s, ok := a.statuses[st]; ok {
		return s
	}
	s := a.evalString(a.global, fmt.Sprintf("runtime.gStatusStrings[%d]", st))
	if s == "" {
		s = "???"
	}
	a.statuses[st] = s
	return s
}

// createdBy spells the creator as the runtime does: "main.main in goroutine 1".
func (a *analysis) createdBy(g *proc.G, scope *proc.EvalScope) string {
	return a.creator(g.GoPC, a.evalUint(scope, "runtime.curg.parentGoid"))
}

// creator spells the creator of a goroutine started at gopc by goroutine
// parent (0: unknown).
func (a *analysis) creator(gopc, parent uint64) string {
	s, ok := a.creators[gopc]
	if !ok {
		if fn := a.t.BinInfo().PCToFunc(gopc); fn != nil {
			s = funcNameForPrint(fn.Name)
		}
		a.creators[gopc] = s
	}
	if s == "" {
		return ""
	}
	if parent != 0 {
		s += " in goroutine " + strconv.FormatUint(parent, 10)
	}
	return s
}

// goroutines appends every goroutine but the crashing one, paging through
// runtime.allgs and dropping delve's caches between pages. A delve target
// is not safe for concurrent use, so a core with many goroutines is opened
// a second time and the pages are split between the two: reading goroutines
// is all small reads and CPU, and halves on two cores.
func (a *analysis) goroutines(r *corepipe.Report, crashing *proc.G) error {
	allglen := a.evalUint(a.global, "runtime.allglen")
	limit, clamped := allgLimit(allglen, a.coreSize)
	if clamped {
		a.opts.Logger.Warn("runtime.allglen is implausible, reading only the first goroutines", "allglen", allglen, "read", limit)
	}
	pages := make([]page, (limit+pageSize-1)/pageSize)
	workers := []*analysis{a}
	if a.parallelWorth(limit) && runtime.GOMAXPROCS(0) > 1 && a.reopen != nil {
		if b, closeB, err := a.reopen(); err != nil {
			a.opts.Logger.Warn("reading goroutines on one core: second view of the core failed", "err", err)
		} else {
			defer closeB()
			workers = append(workers, b)
		}
	}
	for _, wa := range workers {
		wa.useGLayout()
	}
	var (
		wg   sync.WaitGroup
		errs = make([]error, len(workers))
	)
	for w, wa := range workers {
		wg.Go(func() {
			// Inspect recovers delve's panics on its own goroutine only.
			defer func() {
				if p := recover(); p != nil {
					errs[w] = fmt.Errorf("delve panicked reading goroutines: %v", p)
				}
			}()
			errs[w] = wa.pages(pages, w, len(workers), limit, crashing)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	direct, byDelve := 0, 0
	for _, wa := range workers {
		direct, byDelve = direct+wa.listed.direct, byDelve+wa.listed.delve
	}
	a.opts.Logger.Debug("goroutines listed", "from allgs", direct, "by delve", byDelve)
	// A page delve listed holds pageSize live goroutines from its first
	// index on, and runs into the next page's indexes when dead ones are
	// among them: a goroutine seen on an earlier page is not repeated.
	var seen map[int64]bool
	n := len(r.Goroutines)
	for _, p := range pages {
		n += len(p.goroutines)
	}
	r.Goroutines = slices.Grow(r.Goroutines, n-len(r.Goroutines))
	for i := range pages {
		p := &pages[i]
		if p.unreadable > 0 {
			a.opts.Logger.Warn("unreadable goroutines", "count", p.unreadable, "page", i*pageSize)
		}
		if p.delve && seen == nil {
			seen = map[int64]bool{}
			for _, g := range r.Goroutines {
				seen[g.ID] = true
			}
		}
		for _, g := range p.goroutines {
			if a.opts.MaxGoroutines > 0 && len(r.Goroutines) >= a.opts.MaxGoroutines {
				return nil
			}
			if seen != nil {
				if seen[g.ID] {
					continue
				}
				seen[g.ID] = true
			}
			r.Goroutines = append(r.Goroutines, g)
		}
		p.goroutines = nil // copied: the report holds each goroutine once
		if p.garbage || p.end {
			return nil // the rest of allgs is garbage too, or there is no rest
		}
	}
	return nil
}

// minParallelPages is how many pages of goroutines make a second view of
// the core worth opening.
const minParallelPages = 4

// goroutinesPerFunction is how many goroutines to read pay for a second
// view's loading of the debug information, by the functions it holds:
// reading a parked goroutine costs a few microseconds, loading MinIO's
// 130 000 functions a second and a half of CPU and 200 MiB.
const goroutinesPerFunction = 2

// maxParallelFunctions bounds the binaries a second view is opened for:
// its debug information, held twice, must fit the headroom the analyze
// command's soft memory limit leaves (48 MiB; MinIO's 130 000 functions
// hold 190 MiB), or the collector would run without pause while it loads.
const maxParallelFunctions = 1 << 15

// parallelWorth reports whether reading limit goroutines on a second view
// of the core, in parallel, pays for opening it.
func (a *analysis) parallelWorth(limit int) bool {
	funcs := len(a.t.BinInfo().Functions)
	return limit >= minParallelPages*pageSize && limit >= goroutinesPerFunction*funcs && funcs <= maxParallelFunctions
}

// page is what one page of runtime.allgs held.
type page struct {
	goroutines []corepipe.Goroutine
	unreadable int
	garbage    bool // every goroutine unreadable: allgs ends in garbage
	end        bool // the last page of allgs
	delve      bool // listed by delve, by count of live goroutines rather than by index
}

// pages reads every page whose index is worker modulo of, of the first
// limit entries of allgs.
func (a *analysis) pages(pages []page, worker, of, limit int, crashing *proc.G) error {
	for i := worker; i < len(pages); i += of {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		p := &pages[i]
		err := errNoLayout
		if a.gLayout != nil {
			err = a.readPage(p, i, limit, crashing)
		}
		if err != nil {
			if err != errNoLayout {
				a.opts.Logger.Warn("cannot read allgs directly; delve lists the goroutines", "page", i*pageSize, "err", err)
			}
			*p = page{}
			if err := a.delvePage(p, i, crashing); err != nil {
				return err
			}
		}
		a.t.ClearCaches()
		if a.opts.Grown != nil {
			a.opts.Grown(false)
		}
		if p.end {
			return nil
		}
	}
	return nil
}

var errNoLayout = errors.New("runtime.g's layout is unknown")

// readPage reads page i of allgs itself, asking delve only for the
// goroutines it cannot report on its own.
func (a *analysis) readPage(p *page, i, limit int, crashing *proc.G) error {
	start, end := i*pageSize, min((i+1)*pageSize, limit)
	p.end = end >= limit
	seen := 0
	err := a.allgsPage(start, end, func(j int, raw *rawG) {
		if raw != nil && raw.status == gDead {
			return // as delve skips them
		}
		seen++
		if raw != nil && crashing != nil && int64(raw.id) == crashing.ID {
			return
		}
		if raw != nil {
			if rg, ok := a.schedGoroutine(raw); ok {
				a.listed.direct++
				if rg.Status != deadExtra {
					p.goroutines = append(p.goroutines, rg)
				}
				return
			}
		}
		a.listed.delve++
		gs, _, err := proc.GoroutinesInfo(a.t, j, 1)
		if err != nil || len(gs) == 0 || (raw != nil && gs[0].Unreadable == nil && gs[0].ID != int64(raw.id)) {
			p.unreadable++
			return
		}
		a.addGoroutine(p, gs[0], crashing)
	})
	p.garbage = seen > 0 && p.unreadable == seen
	return err
}

// delvePage lists page i of allgs with delve.
func (a *analysis) delvePage(p *page, i int, crashing *proc.G) error {
	gs, next, err := proc.GoroutinesInfo(a.t, i*pageSize, pageSize)
	if err != nil {
		return fmt.Errorf("list goroutines: %w", err)
	}
	p.end, p.delve = next < 0, true
	a.listed.delve += len(gs)
	for _, g := range gs {
		a.addGoroutine(p, g, crashing)
	}
	p.garbage = len(gs) > 0 && p.unreadable == len(gs)
	return nil
}

// addGoroutine adds g, as delve read it, to p.
func (a *analysis) addGoroutine(p *page, g *proc.G, crashing *proc.G) {
	if g.Unreadable != nil {
		p.unreadable++
		return
	}
	if crashing != nil && g.ID == crashing.ID {
		return
	}
	if a.status(g) == deadExtra {
		return
	}
	rg, _, err := a.goroutine(g, false)
	if err != nil {
		a.opts.Logger.Warn("cannot unwind goroutine", "goroutine", g.ID, "err", err)
	}
	p.goroutines = append(p.goroutines, rg)
}

// schedGoroutine reports a goroutine from its runtime.g alone, when it is
// parked (or runnable) off any thread, without pprof labels, and its
// stack is one schedFrames walks.
func (a *analysis) schedGoroutine(raw *rawG) (corepipe.Goroutine, bool) {
	if raw.m != 0 || raw.labels != 0 {
		return corepipe.Goroutine{}, false
	}
	g := &proc.G{ID: int64(raw.id), PC: raw.pc, SP: raw.sp, BP: raw.bp, GoPC: raw.gopc, Status: raw.status, WaitReason: raw.waitReason}
	frames, ok := a.schedFrames(g, schedDepth)
	if !ok {
		return corepipe.Goroutine{}, false
	}
	rg := corepipe.Goroutine{ID: g.ID, Status: a.status(g), Frames: frames}
	if st := g.Status &^ gScan; (st == gWaiting || st == gLeaked) && g.WaitReason != 0 {
		rg.WaitReason = rg.Status
	}
	if g.GoPC != 0 && g.ID != 1 {
		rg.CreatedBy = a.share.creator(a.creator(g.GoPC, raw.parent))
	}
	return rg, true
}

// threads lists every OS thread with where it stopped.
func threads(t *proc.Target) []corepipe.Thread {
	list := t.ThreadList()
	dying := t.CurrentThread().ThreadID()
	out := make([]corepipe.Thread, 0, len(list))
	for _, th := range list {
		rt := corepipe.Thread{ID: th.ThreadID()}
		if regs, err := th.Registers(); err == nil {
			rt.PC, rt.SP = hex(regs.PC()), hex(regs.SP())
			if file, line, fn := t.BinInfo().PCToLine(regs.PC()); fn != nil {
				rt.Function = cName(funcNameForPrint(fn.Name))
				rt.File, rt.Line = file, line
			}
		}
		out = append(out, rt)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].ID == dying) != (out[j].ID == dying) {
			return out[i].ID == dying
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// fault fills the original fault: for a Go fault turned into a panic the
// runtime saved it in the goroutine (g.sig, sigcode0, sigcode1, sigpc); for
// a signal the runtime did not turn into a panic (cgo, C, runtime code) it
// is in the arguments of the handler frame.
func (a *analysis) fault(r *corepipe.Report, g *proc.G, crashFrames []proc.Stackframe, cr crash) {
	if g != nil && hasFrame(crashFrames, "runtime.sigpanic") {
		scope := proc.FrameToScope(a.t, a.t.Memory(), g, 0, proc.Stackframe{})
		if sig := int(a.evalUint(scope, "runtime.curg.sig")); sig != 0 {
			code := int(int32(a.evalUint(scope, "runtime.curg.sigcode0")))
			r.Fault = &corepipe.Fault{
				Signal: sig, Name: corepipe.SignalName(sig), Code: code, CodeName: corepipe.SignalCodeName(sig, code),
				Address: hex(a.evalUint(scope, "runtime.curg.sigcode1")),
				PC:      hex(a.evalUint(scope, "runtime.curg.sigpc")),
			}
			return
		}
	}
	if cr.sigtramp == nil {
		return
	}
	scope := proc.FrameToScope(a.t, a.t.Memory(), g, a.t.CurrentThread().ThreadID(), *cr.sigtramp, *cr.sigCtx)
	sig := int(a.evalUint(scope, "sig"))
	if sig == 0 {
		return
	}
	f := &corepipe.Fault{Signal: sig, Name: corepipe.SignalName(sig), PC: hex(cr.sigCtx.Current.PC)}
	if code, err := a.evalInt(scope, "info.si_code"); err == nil {
		f.Code = int(code)
		f.CodeName = corepipe.SignalCodeName(sig, f.Code)
	}
	if isFault(sig) {
		f.Address = hex(a.evalUint(scope, "info.si_addr"))
	}
	r.Fault = f
}

// panicInfo fills what the runtime printed when it gave up.
func (a *analysis) panicInfo(r *corepipe.Report, g *proc.G, crashFrames []proc.Stackframe, cr crash) {
	switch cr.kind {
	case corepipe.PanicKindPanic:
		if g == nil {
			return
		}
		scope := proc.FrameToScope(a.t, a.t.Memory(), g, 0, proc.Stackframe{})
		if msg := a.panicChain(scope); msg != "" {
			r.Panic = &corepipe.Panic{Kind: cr.kind, Message: msg}
		}
	case corepipe.PanicKindFatal:
		// A throw on the system stack (stack overflow, thread exhaustion)
		// is only on the dying thread's stack, not the goroutine's.
		msg, at, ok := a.throwMessage(g, crashFrames)
		if !ok {
			msg, at, _ = a.throwMessage(nil, cr.frames)
		}
		r.Panic = &corepipe.Panic{Kind: cr.kind, Message: msg}
		// Unlike throw, runtime.fatal (sync's unlock of an unlocked
		// mutex, concurrent map writes) first prints the panics whose
		// deferred calls the goroutine was running, then the fatal
		// error indented as one more entry of the chain: the runtime's
		// first line is then "panic: ". A runtime without
		// printPreFatalDeferPanic (an older Go) prints no chain.
		if g != nil && at != nil && !at.SystemStack && callName(*at) == "runtime.fatal" &&
			len(a.t.BinInfo().LookupFunc()["runtime.printPreFatalDeferPanic"]) > 0 {
			scope := proc.FrameToScope(a.t, a.t.Memory(), g, 0, proc.Stackframe{})
			if chain := a.panicChain(scope); chain != "" {
				r.Panic = &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: chain + "\n" + corepipe.PanicKindFatal + ": " + msg}
			}
		}
	case corepipe.PanicKindSignal:
		sig := 0
		if r.Fault != nil {
			sig = r.Fault.Signal
		}
		if sig == 0 {
			return
		}
		// The runtime's sigtable names read "SIGSEGV: segmentation violation".
		msg := a.evalString(a.global, fmt.Sprintf("runtime.sigtable[%d].name", sig))
		if msg == "" {
			msg = corepipe.SignalName(sig) + ": " + corepipe.SignalText(sig)
		}
		r.Panic = &corepipe.Panic{Kind: cr.kind, Message: msg}
	}
}

// maxPanics bounds the walk of a (possibly corrupt) _panic chain.
const maxPanics = 64

// panicChain renders g._panic as printpanics does, oldest panic first,
// without the leading "panic: " and with the continuation tabs the runtime
// adds after each newline removed.
func (a *analysis) panicChain(scope *proc.EvalScope) string {
	type pan struct {
		arg                           string
		recovered, repanicked, goexit bool
	}
	var chain []pan
	expr := "runtime.curg._panic"
	for len(chain) < maxPanics {
		if a.evalUint(scope, expr) == 0 {
			break
		}
		p := pan{arg: a.panicValue(scope, expr+".arg")}
		p.recovered, _ = a.evalBool(scope, expr+".recovered")
		p.repanicked, _ = a.evalBool(scope, expr+".repanicked")
		p.goexit, _ = a.evalBool(scope, expr+".goexit")
		chain = append(chain, p)
		expr += ".link"
	}
	// Mirror printpanics: recursion on link first, i.e. oldest first.
	var b strings.Builder
	for i := len(chain) - 1; i >= 0; i-- {
		p := chain[i]
		if i < len(chain)-1 && chain[i+1].repanicked {
			break
		}
		if p.goexit {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\npanic: ")
		}
		b.WriteString(p.arg)
		switch {
		case p.recovered && p.repanicked:
			b.WriteString(" [recovered, repanicked]")
		case p.recovered:
			b.WriteString(" [recovered]")
		}
	}
	return b.String()
}

// panicValue renders a panic argument as printpanicval does: a predeclared
// type's value as print prints it, a named type's as T(v) (a complex one as
// T(re+imi)), any other type as (T) and the interface's data word. By the
// time fatalpanic prints, preprintpanics has replaced errors and Stringers by
// the string they return; a fatal error in a deferred call prints the chain
// without that step, so an error is then (*T) 0x….
//
// Numbers are read from the interface's data, not from delve's constant,
// which has no infinities or NaN.
func (a *analysis) panicValue(scope *proc.EvalScope, expr string) string {
	v, err := scope.EvalExpression(expr, loadValue)
	if err != nil || v.Unreadable != nil {
		return "(unreadable)"
	}
	if v.Kind != reflect.Interface || len(v.Children) == 0 || v.Children[0].Kind == reflect.Invalid {
		return "nil"
	}
	c := v.Children[0]
	typ := c.TypeString()
	data, err := a.readWord(v.Addr + uint64(a.t.BinInfo().Arch.PtrSize()))
	if err != nil {
		return "(unreadable)"
	}
	var val string
	switch c.Kind {
	case reflect.String:
		if c.Value == nil {
			return "(unreadable)"
		}
		val = constant.StringVal(c.Value)
		if predeclared[typ] {
			return val
		}
		return typ + `("` + val + `")`
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if c.Value == nil {
			return "(unreadable)"
		}
		val = c.Value.ExactString()
	case reflect.Float32, reflect.Float64:
		f, ok := a.readFloat(data, c.Kind == reflect.Float32)
		if !ok {
			return "(unreadable)"
		}
		val = a.formatFloat(f, c.Kind == reflect.Float32)
	case reflect.Complex64, reflect.Complex128:
		short := c.Kind == reflect.Complex64
		size := uint64(8)
		if short {
			size = 4
		}
		re, ok1 := a.readFloat(data, short)
		im, ok2 := a.readFloat(data+size, short)
		if !ok1 || !ok2 {
			return "(unreadable)"
		}
		// print writes a complex with its parentheses, and
		// printanycustomtype adds none of its own.
		if a.shortFloats {
			bits := 128
			if short {
				bits = 64
			}
			val = strconv.FormatComplex(complex(re, im), 'g', -1, bits)
		} else {
			val = "(" + formatRuntimeFloat(re) + formatRuntimeFloat(im) + "i)"
		}
		if predeclared[typ] {
			return val
		}
		return typ + val
	default:
		return "(" + typ + ") " + hex(data)
	}
	if predeclared[typ] {
		return val
	}
	return typ + "(" + val + ")"
}

// predeclared are the types printpanicval prints bare; any other type,
// named ones included, goes through printanycustomtype.
var predeclared = map[string]bool{
	"bool": true, "string": true, "uintptr": true,
	"int": true, "int8": true, "int16": true, "int32": true, "int64": true,
	"uint": true, "uint8": true, "uint16": true, "uint32": true, "uint64": true,
	"float32": true, "float64": true, "complex64": true, "complex128": true,
}

func (a *analysis) readWord(addr uint64) (uint64, error) {
	buf := make([]byte, 8)
	if _, err := a.t.Memory().ReadMemory(buf, addr); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(buf), nil
}

// readFloat reads a float32 (short) or float64 at addr.
func (a *analysis) readFloat(addr uint64, short bool) (float64, bool) {
	buf := make([]byte, 8)
	if short {
		buf = buf[:4]
	}
	if _, err := a.t.Memory().ReadMemory(buf, addr); err != nil {
		return 0, false
	}
	if short {
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(buf))), true
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(buf)), true
}

// formatFloat prints f as the target's print does: strconv's shortest 'g'
// from Go 1.26 on, the runtime's own +d.dddddde±ddd before.
func (a *analysis) formatFloat(f float64, short bool) string {
	if !a.shortFloats {
		return formatRuntimeFloat(f)
	}
	if short {
		return strconv.FormatFloat(f, 'g', -1, 32)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// formatRuntimeFloat prints f as the runtime's printfloat did before Go
// 1.26 (+1.500000e+000, NaN, +Inf), with its own arithmetic: seven digits
// by repeated division and multiplication, rounded by adding 5e-7, which
// can differ from strconv in the last digit.
func formatRuntimeFloat(v float64) string {
	switch {
	case v != v:
		return "NaN"
	case v+v == v && v > 0:
		return "+Inf"
	case v+v == v && v < 0:
		return "-Inf"
	}
	const n = 7
	var buf [n + 7]byte
	buf[0] = '+'
	e := 0
	if v == 0 {
		if 1/v < 0 {
			buf[0] = '-'
		}
	} else {
		if v < 0 {
			v = -v
			buf[0] = '-'
		}
		for v >= 10 {
			e++
			v /= 10
		}
		for v < 1 {
			e--
			v *= 10
		}
		h := 5.0
		for range n {
			h /= 10
		}
		v += h
		if v >= 10 {
			e++
			v /= 10
		}
	}
	for i := range n {
		s := int(v)
		buf[i+2] = byte(s + '0')
		v -= float64(s)
		v *= 10
	}
	buf[1] = buf[2]
	buf[2] = '.'
	buf[n+2] = 'e'
	buf[n+3] = '+'
	if e < 0 {
		e = -e
		buf[n+3] = '-'
	}
	buf[n+4] = byte(e/100 + '0')
	buf[n+5] = byte(e/10)%10 + '0'
	buf[n+6] = byte(e%10) + '0'
	return string(buf[:])
}

func hasFrame(frames []proc.Stackframe, name string) bool {
	for _, f := range frames {
		if callName(f) == name {
			return true
		}
	}
	return false
}

func (a *analysis) evalUint(scope *proc.EvalScope, expr string) uint64 {
	v, err := scope.EvalExpression(a.globalExpr(expr), loadScalar)
	if err != nil {
		return 0
	}
	return uintOf(v)
}

// uintOf is an integer variable's value as a uint64, 0 when unreadable.
func uintOf(v *proc.Variable) uint64 {
	if v.Unreadable != nil || v.Value == nil {
		return 0
	}
	if u, ok := constant.Uint64Val(v.Value); ok {
		return u
	}
	if i, ok := constant.Int64Val(v.Value); ok {
		return uint64(i)
	}
	return 0
}

func (a *analysis) evalInt(scope *proc.EvalScope, expr string) (int64, error) {
	v, err := scope.EvalExpression(a.globalExpr(expr), loadScalar)
	if err != nil {
		return 0, err
	}
	if v.Unreadable != nil {
		return 0, v.Unreadable
	}
	if i, ok := constant.Int64Val(v.Value); ok {
		return i, nil
	}
	return 0, fmt.Errorf("%s is not an integer", expr)
}

func (a *analysis) evalBool(scope *proc.EvalScope, expr string) (bool, error) {
	v, err := scope.EvalExpression(a.globalExpr(expr), loadScalar)
	if err != nil {
		return false, err
	}
	if v.Unreadable != nil || v.Value == nil || v.Value.Kind() != constant.Bool {
		return false, fmt.Errorf("%s is not a bool", expr)
	}
	return constant.BoolVal(v.Value), nil
}

func (a *analysis) evalString(scope *proc.EvalScope, expr string) string {
	v, err := scope.EvalExpression(a.globalExpr(expr), loadValue)
	if err != nil || v.Unreadable != nil || v.Value == nil || v.Value.Kind() != constant.String {
		return ""
	}
	return constant.StringVal(v.Value)
}
