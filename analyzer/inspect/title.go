package inspect

import (
	"strings"

	"github.com/corepipe/corepipe"
)

// title is the one line a person reads first: what went wrong, and in which
// function of theirs.
func title(r *corepipe.Report, cFunc string) string {
	where := ""
	if fn := culprit(r); fn != "" {
		where = " in " + fn
	}
	if cFunc != "" && r.Fault != nil {
		s := r.Fault.Name + " in C code (" + cFunc + ")"
		if where != "" {
			s += " called from" + strings.TrimPrefix(where, " in")
		}
		return s
	}
	if r.Panic == nil {
		if r.Signal != nil {
			return r.Signal.Name + where
		}
		return ""
	}
	msg, _, _ := strings.Cut(r.Panic.Message, "\n")
	switch r.Panic.Kind {
	case corepipe.PanicKindPanic:
		if strings.Contains(msg, "nil pointer dereference") {
			return "nil pointer dereference" + where
		}
		return "panic: " + msg + where
	case corepipe.PanicKindFatal:
		return "fatal error: " + msg + where
	default:
		name, _, _ := strings.Cut(msg, ":")
		return name + where
	}
}

// culprit is the innermost function of the crashing goroutine that is not
// the runtime's or cgo's machinery.
func culprit(r *corepipe.Report) string {
	g := r.CrashingGoroutineReport()
	if g == nil {
		return ""
	}
	for _, f := range g.Frames {
		if f.Function == "panic" || strings.HasPrefix(f.Function, "runtime.") || strings.Contains(f.Function, "._Cfunc_") {
			continue
		}
		return f.Function
	}
	return ""
}
