package collector

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// kernelArgs are the core_pattern specifiers, in the order
// corepattern.Pattern passes them: %P %i %I %s %t %c %u %g %d %p %F.
type kernelArgs struct {
	PID    int    // %P: pid in the initial pid namespace
	NSTID  int    // %i: tid of the faulting thread in its own namespace
	TID    int    // %I: tid in the initial pid namespace
	Signal int    // %s
	Time   int64  // %t: seconds since the epoch
	Rlimit uint64 // %c: RLIMIT_CORE soft limit; math.MaxUint64 is unlimited
	// HasRlimit is false when %c was missing or garbled: the core is then
	// kept, since dropping it is the one decision that cannot be undone.
	HasRlimit bool
	UID       int // %u; -1 when unknown
	GID       int // %g; -1 when unknown
	Dump      int // %d: dump mode, 1 normal, 2 suid_dumpable
	NSPID     int // %p: pid in its own namespace
	// PidFD is the pidfd number (%F), or -1 when the kernel has no %F.
	PidFD int
}

// argNames label the positional arguments in problems.
var argNames = [...]string{"%P", "%i", "%I", "%s", "%t", "%c", "%u", "%g", "%d", "%p", "%F"}

// parseArgs reads the kernel's arguments. It never fails outright: the core
// is worth keeping even when an argument is garbled, so each field that
// cannot be read stays zero (PID 0 means "unknown") and is reported as a
// problem for the manifest's notes.
func parseArgs(args []string) (kernelArgs, []string) {
	a := kernelArgs{UID: -1, GID: -1, PidFD: -1}
	var problems []string
	// Kernels before %F expand it to nothing, which may leave an empty
	// trailing argument.
	if len(args) == len(argNames) && args[len(args)-1] == "" {
		args = args[:len(args)-1]
	}
	if len(args) != len(argNames) && len(args) != len(argNames)-1 {
		problems = append(problems, fmt.Sprintf("kernel passed %d arguments, want %d or %d (%s)", len(args), len(argNames)-1, len(argNames), strings.Join(argNames[:], " ")))
	}
	ints := []*int{&a.PID, &a.NSTID, &a.TID, &a.Signal, nil, nil, &a.UID, &a.GID, &a.Dump, &a.NSPID, &a.PidFD}
	for i, s := range args {
		if i >= len(argNames) {
			break
		}
		var err error
		switch i {
		case 4:
			a.Time, err = strconv.ParseInt(s, 10, 64)
		case 5:
			a.Rlimit, err = strconv.ParseUint(s, 10, 64)
			a.HasRlimit = err == nil
		default:
			var n int
			n, err = strconv.Atoi(s)
			if err == nil && n < 0 {
				err = fmt.Errorf("negative")
			}
			if err == nil {
				*ints[i] = n
			}
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("kernel argument %s = %q is not a number; ignored", argNames[i], corepipe.Clip(s, 40)))
		}
	}
	return a, problems
}

// rlimitString renders %c as /proc/<pid>/limits does, "" when unknown.
func (a kernelArgs) rlimitString() string {
	switch {
	case !a.HasRlimit:
		return ""
	case a.Rlimit == math.MaxUint64:
		return "unlimited"
	default:
		return strconv.FormatUint(a.Rlimit, 10)
	}
}
