package analyzer

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/containerlog"
	"github.com/corepipe/corepipe/gotrace"
)

// maxLogExcerpt bounds what is read of a stored log excerpt: the agent
// keeps a few MiB, and nothing larger is trusted.
const maxLogExcerpt = 16 << 20

// analyseLog reports a crash that left no core from the traceback its log
// excerpt holds. A log with no Go crash in it (a program that exited 1)
// still gets the report of how its container ended.
func (a *Analyzer) analyseLog(ctx context.Context, c *corepipe.Crash) (*corepipe.Report, error) {
	rc, err := a.cfg.Blobs.Get(ctx, c.Log.Key)
	if err != nil {
		return nil, fmt.Errorf("fetch log excerpt: %w", err)
	}
	defer rc.Close()
	found, err := containerlog.Parse(ctx, io.LimitReader(rc, maxLogExcerpt), containerlog.FormatRaw, gotrace.Options{})
	r := corepipe.NewReport(c)
	switch {
	case errors.Is(err, gotrace.ErrNoCrash):
		r.Status = corepipe.StatusAnalyzed
		r.Source = corepipe.SourceTermination
		r.Kind = corepipe.KindTermination
	case err != nil:
		return nil, err
	default:
		FromTraceback(r, found, c.Log.Source)
		if c.Log.Truncated {
			r.Lacks = append(r.Lacks, "the end of a traceback longer than the excerpt the agent keeps")
		}
	}
	Enrich(r, c)
	return r, nil
}

// FromTraceback fills r, which holds what the collector and agent knew,
// with what a traceback printed by the runtime says (found, from gotrace),
// and names its source.
func FromTraceback(r, found *corepipe.Report, source string) {
	r.Status = corepipe.StatusAnalyzed
	r.Source = source
	r.Kind = corepipe.KindGo
	r.Panic = found.Panic
	r.Fault = found.Fault
	r.CrashingGoroutine = found.CrashingGoroutine
	r.Goroutines = found.Goroutines
	r.Threads = found.Threads
	r.Lacks = append(r.Lacks, found.Lacks...)
	r.Title = corepipe.Title(r, "")
	if r.Panic == nil && threw(r) {
		// golang/go#76859: a throw's "fatal error:" line goes to stderr
		// only, never to the file of debug.SetCrashOutput.
		r.Lacks = append(r.Lacks, `the fatal error's message: the Go runtime writes a throw's "fatal error:" line to stderr only, not to a crash-output file (golang/go#76859); the container's log has it`)
		r.Panic = &corepipe.Panic{Kind: corepipe.PanicKindFatal, Message: "(message not in the crash file)"}
		r.Title = corepipe.Title(r, "")
		r.Panic = nil
	}
}

// threw reports whether the crashing goroutine died in the runtime's throw.
func threw(r *corepipe.Report) bool {
	g := r.CrashingGoroutineReport()
	if g == nil {
		return false
	}
	for _, f := range g.Frames {
		switch f.Function {
		case "runtime.throw", "runtime.fatal", "runtime.fatalthrow", "internal/runtime/maps.fatal":
			return true
		}
	}
	return false
}
