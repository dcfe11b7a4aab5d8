package diagnose

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// near reports whether n is at least 90% of a limit: close enough that the
// next burst of allocation or threads crosses it.
func near(n, limit int64) bool {
	return limit > 0 && n > 0 && n >= limit-limit/10
}

func percent(n, limit int64) string {
	return fmt.Sprintf("%.0f%%", 100*float64(n)/float64(limit))
}

// containerMemory fires when the process came near its cgroup's memory.max,
// or the cgroup's OOM killer had already killed some of its processes.
func containerMemory(r *corepipe.Report, cl *corepipe.CgroupLimits) *corepipe.Diagnosis {
	if cl == nil || (cl.MemoryMax == 0 && cl.OOMKills == 0) {
		return nil
	}
	var heap int64
	if r.Runtime != nil && r.Runtime.HeapLive <= 1<<62 {
		heap = int64(r.Runtime.HeapLive)
	}
	var ev []string
	worst := int64(0)
	for _, u := range []struct {
		what string
		n    int64
	}{{"RSS", r.Process.RSS}, {"live heap", heap}, {"cgroup memory.current", cl.MemoryCurrent}, {"cgroup memory.peak", cl.MemoryPeak}} {
		if u.n <= 0 {
			continue
		}
		worst = max(worst, u.n)
		s := u.what + " " + formatBytes(uint64(u.n))
		if cl.MemoryMax > 0 {
			s += " (" + percent(u.n, cl.MemoryMax) + ")"
		}
		ev = append(ev, s)
	}
	if cl.MemoryMax > 0 {
		ev = append(ev, "memory.max "+formatBytes(uint64(cl.MemoryMax)))
	}
	if cl.OOMKills > 0 {
		ev = append(ev, fmt.Sprintf("memory.events oom_kill %d", cl.OOMKills))
	}
	var msg string
	switch {
	case cl.OOMKills > 0:
		msg = fmt.Sprintf("the container's OOM killer had already killed %d of its processes: it runs at its memory limit", cl.OOMKills)
	case near(worst, cl.MemoryMax):
		msg = fmt.Sprintf("the process was at %s of its container's memory limit (memory.max): the kernel reclaims and then OOM-kills at the limit", percent(worst, cl.MemoryMax))
	default:
		return nil
	}
	return &corepipe.Diagnosis{Code: CodeContainerMemory, Severity: Critical, Message: msg, Evidence: strings.Join(ev, "; ")}
}

// goMemLimitVsContainer fires when the Go runtime does not know about the
// container's memory limit: without a GOMEMLIMIT below memory.max the heap
// grows to GOGC's target and the kernel kills the process before the
// collector ever works harder. It is a warning when memory was the trouble
// (pressure) or GOMEMLIMIT is set above the limit, advice otherwise.
func goMemLimitVsContainer(r *corepipe.Report, env map[string]string, cl *corepipe.CgroupLimits, pressure bool) *corepipe.Diagnosis {
	if cl == nil || cl.MemoryMax == 0 {
		return nil
	}
	limit := goMemLimit(r, env)
	if limit > 0 && limit < cl.MemoryMax {
		return nil
	}
	suggest := formatBytes(uint64(cl.MemoryMax - cl.MemoryMax/10))
	sev, msg, ev := Info, "GOMEMLIMIT is not set: set GOMEMLIMIT below the container limit (about 90%, "+suggest+") so that the Go collector works harder before the kernel kills the process", "GOMEMLIMIT unset"
	if limit > 0 {
		sev = Warning
		msg = "GOMEMLIMIT is at or above the container's memory limit, so it never applies: set GOMEMLIMIT below the container limit (about 90%, " + suggest + ")"
		ev = "GOMEMLIMIT " + formatBytes(uint64(limit))
	}
	if pressure || fatal(r, "out of memory", "runtime: cannot allocate memory") {
		sev = Warning
	}
	return &corepipe.Diagnosis{Code: CodeGoMemLimitContainer, Severity: sev, Message: msg,
		Evidence: ev + "; cgroup memory.max " + formatBytes(uint64(cl.MemoryMax)) + envEvidence(env)}
}

// pidsLimit fires when the container's tasks were near its pids.max, which
// counts every thread of every process in the cgroup: at the limit the Go
// runtime dies with "failed to create new OS thread".
func pidsLimit(r *corepipe.Report, cl *corepipe.CgroupLimits) *corepipe.Diagnosis {
	if cl == nil || cl.PidsMax == 0 {
		return nil
	}
	var rtThreads int
	if r.Runtime != nil {
		rtThreads = r.Runtime.Threads
	}
	var ev []string
	worst := int64(0)
	for _, u := range []struct {
		what string
		n    int64
	}{
		{"OS threads in the core", int64(len(r.Threads))},
		{"threads started by the runtime", int64(rtThreads)},
		{"threads when the collector read /proc", int64(r.Process.Threads)},
		{"tasks in the cgroup (pids.current)", cl.PidsCurrent},
	} {
		if u.n > 0 {
			worst = max(worst, u.n)
			ev = append(ev, fmt.Sprintf("%d %s", u.n, u.what))
		}
	}
	if !near(worst, cl.PidsMax) {
		return nil
	}
	ev = append(ev, fmt.Sprintf("pids.max %d", cl.PidsMax))
	if threadFailure(r) {
		ev = append(ev, "fatal error: "+message(r))
		return &corepipe.Diagnosis{Code: CodePidsLimit, Severity: Critical,
			Message:  fmt.Sprintf("the container's pids.max (%d) ran out: it counts every thread of every process in the cgroup; raise it, or hold fewer threads (blocking system calls, cgo calls, LockOSThread)", cl.PidsMax),
			Evidence: strings.Join(ev, "; ")}
	}
	return &corepipe.Diagnosis{Code: CodePidsLimit, Severity: Warning,
		Message:  fmt.Sprintf("the container was at %s of its pids.max: a few more threads and the Go runtime dies with \"failed to create new OS thread\"", percent(worst, cl.PidsMax)),
		Evidence: strings.Join(ev, "; ")}
}

// gomaxprocsQuota fires when GOMAXPROCS is above the CPUs the cgroup's
// quota allows: the Ps burn the quota early in each period and the whole
// process is throttled for the rest of it.
func gomaxprocsQuota(r *corepipe.Report, env map[string]string, cl *corepipe.CgroupLimits) *corepipe.Diagnosis {
	if cl == nil || cl.CPUQuotaUS <= 0 || cl.CPUPeriodUS <= 0 {
		return nil
	}
	procs := 0
	if r.Runtime != nil {
		procs = r.Runtime.GOMAXPROCS
	}
	if procs == 0 {
		procs, _ = strconv.Atoi(env["GOMAXPROCS"])
	}
	cpus := cl.CPUQuotaUS / cl.CPUPeriodUS
	if cl.CPUQuotaUS%cl.CPUPeriodUS != 0 {
		cpus++
	}
	if procs <= 0 || int64(procs) <= cpus {
		return nil
	}
	ev := fmt.Sprintf("GOMAXPROCS %d; cpu.max %d %d = %.2f CPUs, %d rounded up", procs, cl.CPUQuotaUS, cl.CPUPeriodUS,
		float64(cl.CPUQuotaUS)/float64(cl.CPUPeriodUS), cpus)
	if v, ok := env["GOMAXPROCS"]; ok {
		ev += "; GOMAXPROCS=" + v + " in the environment"
	}
	return &corepipe.Diagnosis{Code: CodeGOMAXPROCSQuota, Severity: Warning,
		Message:  fmt.Sprintf("GOMAXPROCS exceeds the CPU quota (throttling): %d Ps share %d CPUs' worth of quota, so the process is throttled in every period; Go 1.25+ sizes GOMAXPROCS from the quota unless GOMAXPROCS is set or GODEBUG=containermaxprocs=0: drop the override or set it to %d", procs, cpus, cpus),
		Evidence: ev}
}
