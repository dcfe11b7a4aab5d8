package corepipe

import "strings"

// Title is the one line a person reads first: what went wrong, and in which
// function of theirs. cFunc names the C function a cgo or C fault happened
// in, "" when the fault (if any) was in Go code. Every source of reports (a
// core, a log, a crash-output file) titles its crashes with it, so that the
// same bug reads the same wherever it was seen.
func Title(r *Report, cFunc string) string {
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
	case PanicKindPanic:
		if strings.Contains(msg, "nil pointer dereference") {
			return "nil pointer dereference" + where
		}
		return "panic: " + msg + where
	case PanicKindFatal:
		if msg == "fault" && r.Fault != nil {
			return faultTitle(r.Fault) + where
		}
		return "fatal error: " + msg + where
	default:
		name, _, _ := strings.Cut(msg, ":")
		return name + where
	}
}

// Headline is the crash's one-line headline wherever it is shown (the web
// UI, Slack, the terminal): its title, else the best that is known.
func (r *Report) Headline() string {
	switch {
	case r.Title != "":
		return r.Title
	case r.Panic != nil && r.Panic.Message != "":
		msg, _, _ := strings.Cut(r.Panic.Message, "\n")
		return r.Panic.Kind + ": " + msg
	case r.Error != "":
		return "analysis failed: " + r.Error
	case r.Signal != nil && r.Signal.Name != "" && r.Process.Exe != "":
		return r.Signal.Name + " in " + r.Process.Exe
	}
	return "crash " + r.ID
}

// faultTitle names a fault the runtime threw on instead of panicking: an
// address outside the nil page, which no nil pointer explains.
func faultTitle(f *Fault) string {
	switch f.Name {
	case "SIGSEGV":
		return "wild pointer dereference (SIGSEGV at " + f.Address + ")"
	case "SIGBUS":
		code := f.CodeName
		if code == "" {
			code = "SIGBUS"
		}
		return "bus error (" + code + " at " + f.Address + ")"
	}
	return "fault (" + f.Name + " at " + f.Address + ")"
}

// culprit is the innermost function of the crashing goroutine that is not
// the runtime's or cgo's machinery.
func culprit(r *Report) string {
	var frames []Frame
	if g := r.CrashingGoroutineReport(); g != nil {
		frames = g.Frames
	} else if len(r.Threads) > 0 && r.CrashingGoroutine == 0 {
		// No goroutine crashed, or none could be read: the dying thread.
		frames = r.Threads[0].Frames
	}
	for _, f := range frames {
		if f.Function == "panic" || strings.HasPrefix(f.Function, "runtime.") || strings.HasPrefix(f.Function, "internal/runtime/") || strings.Contains(f.Function, "._Cfunc_") {
			continue
		}
		return f.Function
	}
	return ""
}
