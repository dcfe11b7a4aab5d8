package diagnose

import (
	"strings"

	"github.com/corepipe/corepipe"
)

// CodeNoCore says why a Go crash left a traceback but no core, and how to
// get one next time.
const CodeNoCore = "no_core"

// noCore fires for a Go crash known from its log or crash-output file. A
// traceback with the runtime's own frames was printed with GOTRACEBACK
// system or crash; with crash the runtime then raises SIGABRT to dump
// core, and a process that still exited (code 2) rather than dying of the
// signal was PID 1 of its PID namespace, whose init ignores it.
func noCore(r *corepipe.Report) *corepipe.Diagnosis {
	if (r.Source != corepipe.SourceLog && r.Source != corepipe.SourceCrashOutput) || r.Kind != corepipe.KindGo {
		return nil
	}
	exit := -1
	if t := r.Termination; t != nil {
		exit = t.ExitCode
	}
	g := r.CrashingGoroutineReport()
	detailed := g != nil && hasRuntimeFrames(g.Frames)
	switch {
	case detailed && exit == 2:
		return &corepipe.Diagnosis{Code: CodeNoCore, Severity: Warning,
			Message: "the runtime printed a GOTRACEBACK=crash traceback but the process exited with code 2 instead of dumping core: " +
				"as PID 1 of its container its own SIGABRT was ignored (golang/go#34177). Run it under an init " +
				"(tini, or the pod's shareProcessNamespace: true) to get cores, or import github.com/corepipe/corepipe/crashout",
			Evidence: "runtime frames in the traceback; exit code 2"}
	case !detailed:
		return &corepipe.Diagnosis{Code: CodeNoCore, Severity: Info,
			Message: "the Go runtime printed its traceback and exited without a core: GOTRACEBACK was not crash. " +
				"Set GOTRACEBACK=crash (and an init, since PID 1 ignores the SIGABRT) to keep cores, or import github.com/corepipe/corepipe/crashout for every goroutine's stack",
			Evidence: "the traceback has no runtime frames (GOTRACEBACK unset, single or all)"}
	}
	return nil
}

func hasRuntimeFrames(frames []corepipe.Frame) bool {
	for _, f := range frames {
		if strings.HasPrefix(f.Function, "runtime.") {
			return true
		}
	}
	return false
}
