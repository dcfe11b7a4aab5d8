package inspect

// isFault reports whether sig is synchronous: raised by the instruction at
// the thread's PC, so that the PC and the siginfo address mean something.
func isFault(sig int) bool {
	switch sig {
	case 4, 5, 7, 8, 11: // SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV
		return true
	}
	return false
}
