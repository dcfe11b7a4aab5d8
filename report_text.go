package corepipe

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// textOtherFrames is how many frames of each non-crashing goroutine the text
// summary shows: enough to recognise where it waits.
const textOtherFrames = 5

// WriteText writes the summary a person reads in a terminal (`corepipe
// analyze -o text`): what happened, to which process, then the crashing
// goroutine's full stack, then the other goroutines compactly.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	title := r.Headline()
	p("%s\n", title)
	p("%s\n", strings.Repeat("=", min(len(title), 78)))
	if r.ID != "" {
		p("id:        %s (%s)\n", r.ID, r.Status)
	}
	if r.Error != "" {
		p("error:     %s\n", r.Error)
	}
	if r.Source != "" && r.Source != SourceCore {
		p("source:    %s\n", r.Source)
	}
	for _, l := range r.Lacks {
		p("lacks:     %s\n", l)
	}
	if !r.CapturedAt.IsZero() {
		p("captured:  %s on %s\n", r.CapturedAt.Format("2006-01-02 15:04:05 MST"), orUnknown(r.Node))
	}
	if r.Signal != nil {
		p("signal:    %s (%d)\n", r.Signal.Name, r.Signal.Number)
	}
	if f := r.Fault; f != nil {
		p("fault:     %s", f.Name)
		if f.CodeName != "" {
			p(" %s", f.CodeName)
		}
		if f.Address != "" {
			p(" addr=%s", f.Address)
		}
		if f.PC != "" {
			p(" pc=%s", f.PC)
		}
		p("\n")
	}
	// A fatal signal's "panic" repeats the fault line above.
	if r.Panic != nil && !(r.Panic.Kind == PanicKindSignal && r.Fault != nil) {
		msg := strings.ReplaceAll(r.Panic.Message, "\n", "\n           ")
		p("%-10s %s\n", r.Panic.Kind+":", msg)
	}
	if pr := r.Process; pr.PID != 0 || pr.Exe != "" {
		p("process:   pid %d", pr.PID)
		if pr.Exe != "" {
			p(" %s", pr.Exe)
		}
		if len(pr.Cmdline) > 0 {
			p(" (%s)", strings.Join(pr.Cmdline, " "))
		}
		p("\n")
	}
	if c := r.Container; c != nil && c.Pod != "" {
		p("pod:       %s/%s container %s\n", c.Namespace, c.Pod, c.Container)
	}
	if g := r.Go; g != nil {
		p("go:        %s %s", g.Version, g.MainModule)
		if g.MainVersion != "" {
			p("@%s", g.MainVersion)
		}
		if g.VCSRevision != "" {
			p(" rev %s", g.VCSRevision)
		}
		p("\n")
	}
	for _, d := range r.Diagnosis {
		p("%-10s %s\n", d.Severity+":", d.Message)
	}
	if r.Kernel != nil {
		writeKernelText(bw, r.Kernel)
	}

	if th := r.RuntimeStack(); th != nil {
		// Printed first, as the runtime prints it: where a throw on a
		// system stack happened.
		p("\nruntime stack")
		if th.ID != 0 {
			p(" (thread %d)", th.ID)
		}
		p(":\n")
		for _, f := range th.Frames {
			p("  %s\n      %s:%d\n", f.Function, f.File, f.Line)
		}
	}
	if cg := r.CrashingGoroutineReport(); cg != nil {
		p("\n")
		writeGoroutine(bw, cg, len(cg.Frames))
	}
	others := len(r.Goroutines)
	if r.CrashingGoroutine != 0 {
		others--
	}
	if len(r.Goroutines) > 0 {
		p("\n%d goroutines", len(r.Goroutines))
		if others > 0 {
			p(", the other %d:", others)
		}
		p("\n")
	}
	for i := range r.Goroutines {
		if g := &r.Goroutines[i]; g.ID != r.CrashingGoroutine {
			p("\n")
			writeGoroutine(bw, g, textOtherFrames)
		}
	}
	if len(r.Goroutines) == 0 && len(r.Threads) > 0 {
		p("\n%d threads:\n", len(r.Threads))
		for _, t := range r.Threads {
			p("  thread %d pc=%s sp=%s %s", t.ID, t.PC, t.SP, t.Function)
			if t.File != "" {
				p(" %s:%d", t.File, t.Line)
			}
			p("\n")
		}
	}
	return bw.Flush()
}

func writeGoroutine(w io.Writer, g *Goroutine, maxFrames int) {
	fmt.Fprintf(w, "goroutine %d [%s", g.ID, g.Status)
	if g.WaitMinutes > 0 {
		fmt.Fprintf(w, ", %d minutes", g.WaitMinutes)
	}
	fmt.Fprint(w, "]")
	if g.ThreadID != 0 {
		fmt.Fprintf(w, " thread %d", g.ThreadID)
	}
	fmt.Fprintln(w, ":")
	for i, f := range g.Frames {
		if i == maxFrames {
			fmt.Fprintf(w, "  ... %d more frames\n", len(g.Frames)-i+g.FramesElided)
			break
		}
		if g.FramesElided > 0 && i == len(g.Frames)/2 {
			fmt.Fprintf(w, "  ... %d frames elided ...\n", g.FramesElided)
		}
		fmt.Fprintf(w, "  %s\n      %s:%d\n", f.Function, f.File, f.Line)
	}
	if g.CreatedBy != "" {
		fmt.Fprintf(w, "  created by %s\n", g.CreatedBy)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown node"
	}
	return s
}
