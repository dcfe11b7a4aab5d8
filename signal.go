package corepipe

import (
	"fmt"
	"strconv"
)

// signalInfo is everything corepipe says about one Linux signal, kept in one
// table so that the analyzer, the diagnosis and the Kubernetes notes cannot
// disagree about it.
type signalInfo struct {
	name string
	// text is what the Go runtime prints after the name (its sigtable), so a
	// report of a non-Go program reads like one of a Go program.
	text string
	// meaning says who usually sends the signal, for a person deciding
	// where to look; empty when the name says it all.
	meaning string
}

var signals = [...]signalInfo{
	1:  {"SIGHUP", "terminal line hangup", ""},
	2:  {"SIGINT", "interrupt", ""},
	3:  {"SIGQUIT", "quit", ""},
	4:  {"SIGILL", "illegal instruction", ""},
	5:  {"SIGTRAP", "trace trap", ""},
	6:  {"SIGABRT", "abort", "a Go program with GOTRACEBACK=crash aborts itself after printing its traceback; in C, abort() or a failed assert"},
	7:  {"SIGBUS", "bus error", ""},
	8:  {"SIGFPE", "floating-point exception", ""},
	9:  {"SIGKILL", "kill", "nothing in the process sent it: the OOM killer, the kubelet after the grace period (a failed liveness probe, an eviction), or an operator"},
	10: {"SIGUSR1", "", ""},
	11: {"SIGSEGV", "segmentation violation", "a segmentation fault in C or cgo code: Go turns its own faults into panics"},
	12: {"SIGUSR2", "", ""},
	13: {"SIGPIPE", "write to broken pipe", ""},
	14: {"SIGALRM", "", ""},
	15: {"SIGTERM", "termination", "asked to stop, and it did not handle the signal"},
	16: {"SIGSTKFLT", "", ""},
	17: {"SIGCHLD", "", ""},
	18: {"SIGCONT", "", ""},
	19: {"SIGSTOP", "", ""},
	20: {"SIGTSTP", "", ""},
	21: {"SIGTTIN", "", ""},
	22: {"SIGTTOU", "", ""},
	23: {"SIGURG", "", ""},
	24: {"SIGXCPU", "cpu limit exceeded", ""},
	25: {"SIGXFSZ", "file size limit exceeded", ""},
	26: {"SIGVTALRM", "", ""},
	27: {"SIGPROF", "", ""},
	28: {"SIGWINCH", "", ""},
	29: {"SIGIO", "", ""},
	30: {"SIGPWR", "", ""},
	31: {"SIGSYS", "bad system call", ""},
}

func signalOf(n int) signalInfo {
	if n > 0 && n < len(signals) {
		return signals[n]
	}
	return signalInfo{}
}

// SignalName returns the Linux name of signal n ("SIGSEGV"), or "SIG<n>".
func SignalName(n int) string {
	if s := signalOf(n).name; s != "" {
		return s
	}
	return "SIG" + strconv.Itoa(n)
}

// SignalText is the description the Go runtime prints after a signal's name
// ("segmentation violation"), or "signal" for one it has no words for.
func SignalText(n int) string {
	if s := signalOf(n).text; s != "" {
		return s
	}
	return "signal"
}

// SignalMeaning says who usually sends signal n and what that tells about the
// death, or "" when corepipe has nothing to add to its name.
func SignalMeaning(n int) string {
	return signalOf(n).meaning
}

// ExitCodeMeaning explains a process's exit status in one line for an
// operator: sig is the signal that ended it (0 for none), which is how a
// container runtime's 128+n is told apart from a program's own choice.
// It returns "" for code 0.
func ExitCodeMeaning(code, sig int) string {
	switch {
	case code == 0:
		return ""
	case code == 1:
		return "exit code 1: the program reported an error and exited (Go: log.Fatal, os.Exit(1))"
	case code == 2:
		return "exit code 2: an unrecovered Go panic or fatal error without GOTRACEBACK=crash, so no core was dumped (or a shell builtin misused)"
	case code == 126:
		return "exit code 126: the command was found but could not be executed (permissions, wrong architecture, not an executable)"
	case code == 127:
		return "exit code 127: the command was not found (wrong command or entrypoint, or a missing interpreter or shared library)"
	case code == 255:
		return "exit code 255: an exit status out of range (os.Exit(-1), exit(-1)) or a failure to start the process"
	case code > 128 && sig == code-128:
		s := fmt.Sprintf("exit code %d = 128+%d: killed by %s", code, sig, SignalName(sig))
		if m := SignalMeaning(sig); m != "" {
			s += " (" + m + ")"
		}
		return s
	}
	return fmt.Sprintf("exit code %d: chosen by the program", code)
}
