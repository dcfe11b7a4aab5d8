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
	last := r.Panic.Last()
	msg, _, _ := strings.Cut(last.Message, "\n")
	switch last.Kind {
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
		last := r.Panic.Last()
		msg, _, _ := strings.Cut(last.Message, "\n")
		return last.Kind + ": " + msg
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

// Last is the entry of a panic chain that names the crash, in its title and
// in its signature: the last one the runtime printed, which is what killed
// the process, where the crashing goroutine's innermost frames are. The
// runtime prints a chain oldest first, one entry a line, each after the
// first with its own kind: Message "A [recovered]\npanic: B" is the panic
// B, "A\nfatal error: sync: unlock of unlocked mutex" (a fatal error in a
// deferred call of panic A) is that fatal error. The whole chain stays in
// Message. A message without a chain is its own last entry.
func (p *Panic) Last() Panic {
	last := *p
	if p.Kind != PanicKindPanic && p.Kind != PanicKindFatal {
		return last
	}
	at := -1
	for _, kind := range []string{PanicKindPanic, PanicKindFatal} {
		if i := strings.LastIndex(p.Message, "\n"+kind+": "); i > at {
			at = i
			last = Panic{Kind: kind, Message: p.Message[i+len("\n"+kind+": "):]}
		}
	}
	return last
}

// ThrowSite is the runtime function that threw a fatal error on a system
// stack when no goroutine crashed, thread exhaustion for one: the caller of
// runtime.throw on the stack the runtime printed first as "runtime stack:",
// which a report holds as its dying thread's (Threads[0]). The title and
// the signature name it, as they name a crashing goroutine's own code. A
// deadlock has none: runtime.checkdead's verdict is about every goroutine,
// and the goroutines say where they wait.
func (r *Report) ThrowSite() string {
	if r.Panic == nil || r.CrashingGoroutine != 0 || len(r.Threads) == 0 || r.Panic.Last().Kind != PanicKindFatal {
		return ""
	}
	th := r.RuntimeStack()
	if th == nil {
		return ""
	}
	for _, f := range th.Frames[1:] {
		switch {
		case throwFrame(f.Function):
		case f.Function == "runtime.checkdead":
			return ""
		default:
			return f.Function
		}
	}
	return ""
}

// RuntimeStack is the dying thread when the report holds, as its stack,
// the system stack a fatal error was thrown on, which the runtime prints
// first as "runtime stack:" and which starts at the throw; else nil. Every
// front end shows it as the crash site, before the crashing goroutine.
func (r *Report) RuntimeStack() *Thread {
	if r.Panic == nil || len(r.Threads) == 0 || len(r.Threads[0].Frames) == 0 || !throwFrame(r.Threads[0].Frames[0].Function) {
		return nil
	}
	return &r.Threads[0]
}

// throwFrame reports whether fn is the runtime's throw machinery, under its
// own name or the one the runtime gives it for a package (sync's fatal), or
// the call the signal handler injects before a throw on a fault.
func throwFrame(fn string) bool {
	switch fn {
	case "runtime.throw", "runtime.fatal", "runtime.fatalthrow", "runtime.fatalpanic", "runtime.sigpanic",
		"sync.throw", "sync.fatal", "internal/sync.throw", "internal/sync.fatal":
		return true
	}
	return false
}

// culprit is the innermost function of the crashing goroutine that is not
// the runtime's or cgo's machinery; with no crashing goroutine, the
// function that threw on a system stack.
func culprit(r *Report) string {
	if site := r.ThrowSite(); site != "" {
		return site
	}
	var frames []Frame
	if g := r.CrashingGoroutineReport(); g != nil {
		frames = g.Frames
	} else if len(r.Threads) > 0 && r.CrashingGoroutine == 0 {
		// No goroutine crashed, or none could be read: the dying thread.
		frames = r.Threads[0].Frames
	}
	for _, f := range frames {
		if f.Function == "panic" || throwFrame(f.Function) || strings.HasPrefix(f.Function, "runtime.") || strings.HasPrefix(f.Function, "internal/runtime/") || strings.Contains(f.Function, "._Cfunc_") {
			continue
		}
		return f.Function
	}
	return ""
}
