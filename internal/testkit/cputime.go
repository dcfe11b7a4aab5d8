package testkit

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime is the user and system time the process has used so far. On a
// shared machine a benchmark's wall clock counts other people's work; its
// CPU time does not.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPUPer reports the CPU time spent since the CPUTime reading since,
// in microseconds per each of n units named unit.
func ReportCPUPer(b *testing.B, since time.Duration, n int, unit string) {
	b.ReportMetric(float64((CPUTime()-since).Microseconds())/float64(n), "cpu-µs/"+unit)
}
