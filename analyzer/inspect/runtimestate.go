package inspect

import "github.com/corepipe/corepipe"

// runtimeState reads the runtime settings and counters that the runbook
// compares with the container's limits. A variable the target's Go version
// lacks is left zero.
func (a *analysis) runtimeState() *corepipe.RuntimeState {
	s := a.global
	rs := &corepipe.RuntimeState{
		GOMAXPROCS: int(a.evalUint(s, "runtime.gomaxprocs")),
		MaxThreads: int(int32(a.evalUint(s, "runtime.sched.maxmcount"))),
		Threads:    int(int64(a.evalUint(s, "runtime.sched.mnext")) - int64(a.evalUint(s, "runtime.sched.nmfreed"))),
		GCPercent:  int(int32(a.evalUint(s, "runtime.gcController.gcPercent.value"))),
		HeapLive:   a.evalUint(s, "runtime.gcController.heapLive.value"),
	}
	// math.MaxInt64 is the runtime's "no limit".
	if lim := int64(a.evalUint(s, "runtime.gcController.memoryLimit.value")); lim > 0 && lim != 1<<63-1 {
		rs.MemoryLimit = lim
	}
	if rs.GOMAXPROCS == 0 {
		return nil
	}
	return rs
}
