// Package inspect turns a core dump and its executable into a
// corepipe.Report: the signal, the original fault, the panic or fatal error,
// every goroutine's stack as the Go runtime itself would print it, and every
// OS thread. It is the only package that imports delve.
//
// The kernel's view of the crash (which thread died, of which signal, which
// files were mapped) comes from the core's ELF notes, read here before delve
// is involved, so that a wrong or damaged input fails with a clear error
// instead of a wrong report.
package inspect

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/pkg/proc/core"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/corefile"
	"github.com/corepipe/corepipe/internal/settings"
)

// Options tune an analysis. The zero value is ready to use.
type Options struct {
	// MaxFrames caps the frames kept per goroutine (default 1000): the
	// innermost and outermost halves are kept and the rest counted in
	// frames_elided, so a stack overflow stays bounded.
	MaxFrames int
	// MaxGoroutines caps the goroutines reported (0: all). The crashing
	// goroutine is always included.
	MaxGoroutines int
	// Logger receives what the analysis had to guess or skip.
	Logger *slog.Logger
	// DebugInfoDirs are where delve looks for the separate debug file of
	// an executable without DWARF: <dir>/.build-id/xx/rest.debug, then
	// <dir>/<executable's name>.debug.
	DebugInfoDirs []string
	// Grown, if set, is called where what the analysis holds has grown:
	// once delve has read the executable's debug information (first,
	// with loaded true), which on a big binary is most of it, and after
	// each page of goroutines, from the goroutine that read it (two may
	// run at once). The caller may size its garbage collector's limits
	// by it.
	Grown func(loaded bool)
}

const defaultMaxFrames = 1000

func (o Options) withDefaults() Options {
	settings.Default(&o.MaxFrames, defaultMaxFrames)
	if o.MaxFrames < 4 {
		o.MaxFrames = 4
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Inspect analyses the core at corePath dumped by the executable at exePath.
// It fills the fields of the report that come from the core (status,
// signal, fault, panic, go, goroutines, threads, title); the caller merges
// what it knows from the crash manifest. Inputs that can never be analysed
// (not a core, truncated, an executable that does not belong to the core)
// return an error wrapping corepipe.ErrInvalid.
func Inspect(ctx context.Context, corePath, exePath string, opts Options) (rep *corepipe.Report, err error) {
	opts = opts.withDefaults()
	c, err := openCore(corePath)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if exePath == "" {
		// The kernel names the files it mapped: the executable is the one
		// mapped at the program's entry point.
		p, _, ok := c.MainMapping()
		if !ok {
			return nil, fmt.Errorf("%w: core %s names no executable: give it explicitly", corepipe.ErrInvalid, corePath)
		}
		exePath = p
	}
	exe, err := corefile.ReadExe(exePath)
	if err != nil {
		return nil, err
	}
	if err := c.CheckExe(exe); err != nil {
		return nil, err
	}

	r := &corepipe.Report{Schema: corepipe.ReportSchema, Status: corepipe.StatusAnalyzed}
	if sig := c.KillSignal(); sig != 0 {
		r.Signal = &corepipe.Signal{Number: sig, Name: corepipe.SignalName(sig)}
	}
	r.Go = goInfo(exePath, exe)
	r.Arch, r.Kind = corefile.Arch(c.Machine), corepipe.KindNative
	if r.Go != nil {
		r.Kind = corepipe.KindGo
	}

	defer func() {
		if p := recover(); p != nil {
			opts.Logger.Error("delve panicked", "core", corePath, "panic", p, "stack", string(debug.Stack()))
			rep, err = nil, fmt.Errorf("analyse core %s: delve panicked: %v", corePath, p)
		}
	}()
	tg, err := core.OpenCore(corePath, exePath, opts.DebugInfoDirs)
	if err != nil {
		if r.Go == nil {
			// delve needs DWARF; a stripped C program still has the
			// kernel's notes, which say what died and where.
			opts.Logger.Info("delve cannot read this executable; reporting the kernel's notes only", "err", err)
			c.fillNative(r, nil, exePath)
			return r, nil
		}
		if c.Truncated != nil {
			return c.notesOnly(r, exePath, err), nil
		}
		return nil, fmt.Errorf("open core %s with %s: %w", corePath, exePath, err)
	}
	defer tg.Detach(false)
	if opts.Grown != nil {
		opts.Grown(true)
	}

	a := newAnalysis(ctx, tg.Selected, opts, c.Size)
	a.reopen = func() (*analysis, func(), error) {
		tg2, err := core.OpenCore(corePath, exePath, opts.DebugInfoDirs)
		if err != nil {
			return nil, nil, err
		}
		b := newAnalysis(ctx, tg2.Selected, opts, c.Size)
		if err := b.scopeFrom(a); err != nil {
			tg2.Detach(false)
			return nil, nil, err
		}
		return b, func() { tg2.Detach(false) }, nil
	}
	if r.Go == nil {
		c.fillNative(r, a.t, exePath)
		return r, nil
	}
	if err := a.run(r); err != nil {
		if c.Truncated != nil {
			partial := &corepipe.Report{Schema: r.Schema, Status: r.Status, Signal: r.Signal, Go: r.Go}
			return c.notesOnly(partial, exePath, err), nil
		}
		return nil, fmt.Errorf("analyse core %s: %w", corePath, err)
	}
	if c.Truncated != nil {
		c.noteTruncated(r, nil)
	}
	return r, nil
}

// goInfo reads the Go build information of exe, or returns nil when exe is
// not a Go program.
func goInfo(path string, exe *corefile.Exe) *corepipe.GoInfo {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil
	}
	g := &corepipe.GoInfo{
		Version:     bi.GoVersion,
		MainModule:  bi.Main.Path,
		MainVersion: bi.Main.Version,
		BuildID:     exe.GoBuildID,
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			g.VCSRevision = s.Value
		}
	}
	return g
}

// fillNative reports a non-Go program: no goroutines, the threads as the
// stack source, the fault from the kernel's siginfo.
func (c *coreFile) fillNative(r *corepipe.Report, t *proc.Target, exePath string) {
	sig := c.KillSignal()
	dying := c.Threads[0]
	if c.Siginfo != nil && isFault(sig) {
		r.Fault = &corepipe.Fault{
			Signal:   sig,
			Name:     corepipe.SignalName(sig),
			Code:     c.Siginfo.Code,
			CodeName: corepipe.SignalCodeName(sig, c.Siginfo.Code),
			Address:  hex(c.Siginfo.Addr),
			PC:       hex(dying.PC),
		}
	}
	if sig != 0 {
		r.Panic = &corepipe.Panic{Kind: corepipe.PanicKindSignal, Message: corepipe.SignalName(sig) + ": " + corepipe.SignalText(sig)}
	}
	if t != nil {
		r.Threads = threads(t)
		threadStacks(t, r.Threads)
	} else {
		for _, th := range c.Threads {
			r.Threads = append(r.Threads, corepipe.Thread{ID: th.TID, PC: hex(th.PC), SP: hex(th.SP)})
		}
	}
	c.scanStacks(r.Threads, exePath)
	where := ""
	if len(r.Threads) > 0 && r.Threads[0].Function != "" {
		where = " in " + r.Threads[0].Function
		if fr := r.Threads[0].Frames; len(fr) > 1 && fr[0].Function == r.Threads[0].Function {
			where += " called from " + fr[1].Function
		}
	}
	if sig != 0 {
		r.Title = corepipe.SignalName(sig) + where
	}
}

// cName strips delve's "C." prefix and cgo's generated wrapper names from a C
// function's name: "C._cgo_0a1b_Cfunc_crash" → "crash".
func cName(name string) string {
	name = strings.TrimPrefix(name, "C.")
	if _, after, ok := strings.Cut(name, "_Cfunc_"); ok {
		return after
	}
	return name
}

func hex(v uint64) string { return fmt.Sprintf("%#x", v) }
