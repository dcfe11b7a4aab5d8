package analyzer

import (
	"fmt"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/diagnose"
	"github.com/corepipe/corepipe/analyzer/signature"
)

// Enrich adds what is derived from the analysed facts: goroutine groups,
// the signature, the runbook's diagnosis, and a title for a crash known
// only from its container's termination. c is the crash manifest, nil when
// only the core is known. Enriching twice gives the same report, so the
// child process and the worker can both do it.
func Enrich(r *corepipe.Report, c *corepipe.Crash) {
	if len(r.Goroutines) > 0 {
		r.GoroutineGroups = signature.GoroutineGroups(r.Goroutines)
	}
	if r.Title == "" {
		r.Title = terminationTitle(r)
	}
	r.Signature = signature.Signature(r)
	// Keep what the inspection itself noted (an unreadable part of the
	// core); the checks decide their own afresh.
	var kept []corepipe.Diagnosis
	for _, d := range r.Diagnosis {
		if !diagnose.Known(d.Code) {
			kept = append(kept, d)
		}
	}
	r.Diagnosis = append(kept, diagnose.Diagnose(r, c)...)
}

// terminationTitle names a crash without a core: "OOMKilled: container app
// in default/web-7d9f".
func terminationTitle(r *corepipe.Report) string {
	t := r.Termination
	if t == nil {
		return ""
	}
	what := t.Reason
	if what == "" {
		what = fmt.Sprintf("exit code %d", t.ExitCode)
	}
	if c := r.Container; c != nil && c.Pod != "" {
		return fmt.Sprintf("%s: container %s in %s/%s", what, c.Container, c.Namespace, c.Pod)
	}
	if r.Process.Exe != "" {
		return what + ": " + r.Process.Exe
	}
	return what
}
