package diagnose

import (
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
)

// TestContainerLimits checks each cgroup-limit check firing and staying
// quiet. Only the four container codes are compared: the other checks have
// their own table.
func TestContainerLimits(t *testing.T) {
	const gib = 1 << 30
	panicked := func() *corepipe.Report {
		return &corepipe.Report{Panic: &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: "boom"}}
	}
	withRSS := func(rss int64) *corepipe.Report {
		r := panicked()
		r.Process.RSS = rss
		return r
	}
	withRuntime := func(rt corepipe.RuntimeState) *corepipe.Report {
		r := panicked()
		r.Runtime = &rt
		return r
	}
	limitedEnv := map[string]string{"GOMEMLIMIT": "900MiB"}
	mem := func(max int64) *corepipe.CgroupLimits { return &corepipe.CgroupLimits{MemoryMax: max} }
	threadsDied := fatalReport("failed to create new OS thread (have 97 already; errno=11)")
	threadsDied.Runtime = &corepipe.RuntimeState{Threads: 97}

	for _, tc := range []struct {
		name     string
		r        *corepipe.Report
		c        *corepipe.Crash
		want     []string                     // the container checks that fire, in order
		severity map[string]corepipe.Severity // code → severity
		evidence map[string]string            // code → what its evidence says
	}{
		{"no manifest", withRSS(gib), nil, nil, nil, nil},
		{"no cgroup limits", withRSS(gib), &corepipe.Crash{Environ: map[string]string{"GOMAXPROCS": "64"}}, nil, nil, nil},
		{"RSS near memory.max, GOMEMLIMIT unset", withRSS(gib - 50<<20), &corepipe.Crash{CgroupLimits: mem(gib)},
			[]string{CodeContainerMemory, CodeGoMemLimitContainer},
			map[string]corepipe.Severity{CodeContainerMemory: Critical, CodeGoMemLimitContainer: Warning},
			map[string]string{CodeContainerMemory: "RSS 974.0 MiB (95%); memory.max 1.0 GiB", CodeGoMemLimitContainer: "GOMEMLIMIT unset; cgroup memory.max 1.0 GiB"}},
		{"live heap near memory.max", withRuntime(corepipe.RuntimeState{HeapLive: 950 << 20, MemoryLimit: 900 << 20}),
			&corepipe.Crash{CgroupLimits: mem(gib)}, []string{CodeContainerMemory}, nil,
			map[string]string{CodeContainerMemory: "live heap 950.0 MiB (93%)"}},
		{"cgroup peak near memory.max", panicked(),
			&corepipe.Crash{Environ: limitedEnv, CgroupLimits: &corepipe.CgroupLimits{MemoryMax: gib, MemoryCurrent: 300 << 20, MemoryPeak: gib}},
			[]string{CodeContainerMemory}, nil, map[string]string{CodeContainerMemory: "cgroup memory.current 300.0 MiB (29%); cgroup memory.peak 1.0 GiB (100%)"}},
		{"well below memory.max, GOMEMLIMIT below it", withRSS(500 << 20), &corepipe.Crash{Environ: limitedEnv, CgroupLimits: mem(gib)}, nil, nil, nil},
		{"OOM kills in the cgroup", withRSS(100 << 20), &corepipe.Crash{Environ: limitedEnv, CgroupLimits: &corepipe.CgroupLimits{MemoryMax: gib, OOMKills: 3}},
			[]string{CodeContainerMemory}, map[string]corepipe.Severity{CodeContainerMemory: Critical},
			map[string]string{CodeContainerMemory: "memory.events oom_kill 3"}},
		{"GOMEMLIMIT unset, no memory trouble: advice", withRSS(100 << 20), &corepipe.Crash{CgroupLimits: mem(gib)},
			[]string{CodeGoMemLimitContainer}, map[string]corepipe.Severity{CodeGoMemLimitContainer: Info}, nil},
		{"GOMEMLIMIT above memory.max", withRSS(100 << 20), &corepipe.Crash{Environ: map[string]string{"GOMEMLIMIT": "2GiB"}, CgroupLimits: mem(gib)},
			[]string{CodeGoMemLimitContainer}, map[string]corepipe.Severity{CodeGoMemLimitContainer: Warning},
			map[string]string{CodeGoMemLimitContainer: "GOMEMLIMIT 2.0 GiB; cgroup memory.max 1.0 GiB; GOMEMLIMIT=2GiB"}},
		{"runtime's memory limit wins over the environment", withRuntime(corepipe.RuntimeState{MemoryLimit: 2 * gib}),
			&corepipe.Crash{Environ: limitedEnv, CgroupLimits: mem(gib)}, []string{CodeGoMemLimitContainer}, nil, nil},
		{"no memory.max: nothing to compare", withRSS(gib), &corepipe.Crash{CgroupLimits: &corepipe.CgroupLimits{MemoryCurrent: gib, PidsMax: 1000}}, nil, nil, nil},
		{"thread creation failed at pids.max", threadsDied, &corepipe.Crash{Environ: limitedEnv, CgroupLimits: &corepipe.CgroupLimits{PidsMax: 100, PidsCurrent: 100}},
			[]string{CodePidsLimit}, map[string]corepipe.Severity{CodePidsLimit: Critical},
			map[string]string{CodePidsLimit: "97 threads started by the runtime; 100 tasks in the cgroup (pids.current); pids.max 100; fatal error: failed to create new OS thread"}},
		{"threads near pids.max without a failure", func() *corepipe.Report {
			r := panicked()
			r.Process.Threads = 95
			return r
		}(), &corepipe.Crash{CgroupLimits: &corepipe.CgroupLimits{PidsMax: 100}},
			[]string{CodePidsLimit}, map[string]corepipe.Severity{CodePidsLimit: Warning}, map[string]string{CodePidsLimit: "95 threads when the collector read /proc; pids.max 100"}},
		{"thread failure far below pids.max", threadsDied, &corepipe.Crash{CgroupLimits: &corepipe.CgroupLimits{PidsMax: 4096, PidsCurrent: 98}}, nil, nil, nil},
		{"GOMAXPROCS over the CPU quota", withRuntime(corepipe.RuntimeState{GOMAXPROCS: 8}),
			&corepipe.Crash{Environ: map[string]string{"GOMAXPROCS": "8"}, CgroupLimits: &corepipe.CgroupLimits{CPUQuotaUS: 150000, CPUPeriodUS: 100000}},
			[]string{CodeGOMAXPROCSQuota}, map[string]corepipe.Severity{CodeGOMAXPROCSQuota: Warning},
			map[string]string{CodeGOMAXPROCSQuota: "GOMAXPROCS 8; cpu.max 150000 100000 = 1.50 CPUs, 2 rounded up; GOMAXPROCS=8 in the environment"}},
		{"GOMAXPROCS from the environment when the core has no runtime state", panicked(),
			&corepipe.Crash{Environ: map[string]string{"GOMAXPROCS": "4"}, CgroupLimits: &corepipe.CgroupLimits{CPUQuotaUS: 200000, CPUPeriodUS: 100000}},
			[]string{CodeGOMAXPROCSQuota}, nil, map[string]string{CodeGOMAXPROCSQuota: "GOMAXPROCS 4; cpu.max 200000 100000 = 2.00 CPUs"}},
		{"GOMAXPROCS at the rounded-up quota", withRuntime(corepipe.RuntimeState{GOMAXPROCS: 2}),
			&corepipe.Crash{CgroupLimits: &corepipe.CgroupLimits{CPUQuotaUS: 150000, CPUPeriodUS: 100000}}, nil, nil, nil},
		{"no CPU quota", withRuntime(corepipe.RuntimeState{GOMAXPROCS: 64}),
			&corepipe.Crash{CgroupLimits: &corepipe.CgroupLimits{PidsMax: 1000}}, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Diagnose(tc.r, tc.c)
			var codes []string
			for _, d := range got {
				switch d.Code {
				case CodeContainerMemory, CodeGoMemLimitContainer, CodePidsLimit, CodeGOMAXPROCSQuota:
					codes = append(codes, d.Code)
				}
				if d.Message == "" || d.Evidence == "" || d.Severity == "" || !Known(d.Code) {
					t.Errorf("check %+v lacks a message, evidence or severity", d)
				}
				if want, ok := tc.severity[d.Code]; ok && d.Severity != want {
					t.Errorf("%s severity %s, want %s", d.Code, d.Severity, want)
				}
				if want, ok := tc.evidence[d.Code]; ok && !strings.Contains(d.Evidence, want) {
					t.Errorf("%s evidence %q lacks %q", d.Code, d.Evidence, want)
				}
			}
			if !slices.Equal(codes, tc.want) {
				t.Errorf("container checks fired %v, want %v", codes, tc.want)
			}
		})
	}
}

// TestThreadExhaustionNamesPidsMax checks that the thread exhaustion check
// cites the cgroup's pids.max when it is known.
func TestThreadExhaustionNamesPidsMax(t *testing.T) {
	r := fatalReport("newosproc")
	for _, d := range Diagnose(r, &corepipe.Crash{CgroupLimits: &corepipe.CgroupLimits{PidsMax: 4096, PidsCurrent: 12}}) {
		if d.Code == CodeThreadExhaustion {
			if !strings.Contains(d.Evidence, "cgroup pids.max 4096, pids.current 12") {
				t.Errorf("evidence %q lacks pids.max", d.Evidence)
			}
			return
		}
	}
	t.Error("thread exhaustion did not fire")
}
