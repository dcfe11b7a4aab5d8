package corepipe

import (
	"strings"
	"time"
)

// ReportSchema is the version of the Report JSON.
const ReportSchema = 1

// ReportStatus is how far a crash's analysis got.
type ReportStatus string

// Report statuses.
const (
	StatusAnalyzed ReportStatus = "analyzed"
	StatusFailed   ReportStatus = "failed"
	StatusPending  ReportStatus = "pending"
	// StatusDropped is a crash whose core the collector did not keep (the
	// per-executable rate limit in a crash storm, the spool's disk
	// limits, RLIMIT_CORE): recorded and counted, not a failure.
	StatusDropped ReportStatus = "dropped"
	// StatusDeleted is never stored: retention announces with it, on the
	// reports stream, a report it deleted, so that every index forgets it.
	StatusDeleted ReportStatus = "deleted"
)

// Where a report's facts came from (Report.Source).
const (
	SourceCore        = "core"
	SourceLog         = "log"
	SourceCrashOutput = "crash_output"
	SourceTermination = "termination"
)

// SourceName says in words where a report's facts came from.
func SourceName(source string) string {
	switch source {
	case SourceCore:
		return "core dump"
	case SourceLog:
		return "container log (no core)"
	case SourceCrashOutput:
		return "crash-output file (no core)"
	case SourceTermination:
		return "container termination (no core, no traceback)"
	case SourceNetconsole:
		return "node console log over netconsole"
	case SourcePstore:
		return "node console log from pstore"
	case SourceKdump:
		return "node console log from kdump"
	case SourceConsole:
		return "node console log"
	}
	return source
}

// What kind of crash a report is (Report.Kind).
const (
	KindGo          = "go"
	KindNative      = "native"
	KindKernelPanic = "kernel_panic"
	KindTermination = "termination"
)

// Panic kinds.
const (
	PanicKindPanic  = "panic"
	PanicKindFatal  = "fatal error"
	PanicKindSignal = "signal"
)

// Report is the analysis of one crash: the contract of design.md. Field names
// are stable; an absent field means unknown.
type Report struct {
	Schema     int          `json:"schema"`
	ID         string       `json:"id"`
	Status     ReportStatus `json:"status"`
	Error      string       `json:"error,omitempty"`
	CapturedAt time.Time    `json:"captured_at"`
	Node       string       `json:"node,omitempty"`
	// Source is where the facts came from: a core, the container's log, a
	// crash-output file (see the Source* constants).
	Source string `json:"source,omitempty"`
	// Kind is what crashed: a Go program, a native one, the node's kernel,
	// or a container known only by how it ended (see the Kind* constants).
	Kind string `json:"kind,omitempty"`
	// Arch is the GOARCH of the crashed program ("amd64", "arm64").
	Arch string `json:"arch,omitempty"`
	// Lacks says what this report cannot show, one phrase each ("only the
	// crashing goroutine: GOTRACEBACK=single", "frames elided by the
	// runtime"), so that a reader knows an absence is not a fact.
	Lacks             []string         `json:"lacks,omitempty"`
	Process           Process          `json:"process"`
	Container         *Container       `json:"container,omitempty"`
	Termination       *Termination     `json:"termination,omitempty"`
	CgroupLimits      *CgroupLimits    `json:"cgroup_limits,omitempty"`
	Signal            *Signal          `json:"signal,omitempty"`
	Fault             *Fault           `json:"fault,omitempty"`
	Panic             *Panic           `json:"panic,omitempty"`
	Go                *GoInfo          `json:"go,omitempty"`
	Runtime           *RuntimeState    `json:"runtime,omitempty"`
	Kernel            *KernelPanic     `json:"kernel,omitempty"`
	CrashingGoroutine int64            `json:"crashing_goroutine,omitempty"`
	Goroutines        []Goroutine      `json:"goroutines,omitempty"`
	GoroutineGroups   []GoroutineGroup `json:"goroutine_groups,omitempty"`
	Threads           []Thread         `json:"threads,omitempty"`
	Signature         string           `json:"signature,omitempty"`
	Title             string           `json:"title,omitempty"`
	Diagnosis         []Diagnosis      `json:"diagnosis,omitempty"`
	Artifacts         Artifacts        `json:"artifacts"`
	Timings           Timings          `json:"timings"`
	// Revision counts the analyses that replaced this crash's first
	// report: 0 for the first, n after the nth re-analysis.
	Revision int `json:"revision,omitempty"`
	// TopFrames is set by Summary: a summary has no goroutines, yet lists
	// and notifications must still say where the crash happened.
	TopFrames []Frame `json:"top_frames,omitempty"`
}

// Fault is the original fault that started the crash, when there was one.
// Address and PC are "0x…" strings.
type Fault struct {
	Signal   int    `json:"signal"`
	Name     string `json:"name,omitempty"`
	Code     int    `json:"code"`
	CodeName string `json:"code_name,omitempty"`
	Address  string `json:"address,omitempty"`
	PC       string `json:"pc,omitempty"`
}

// Panic is what the runtime said when it gave up.
type Panic struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// GoInfo is the build information of a Go executable.
type GoInfo struct {
	Version     string `json:"version,omitempty"`
	MainModule  string `json:"main_module,omitempty"`
	MainVersion string `json:"main_version,omitempty"`
	VCSRevision string `json:"vcs_revision,omitempty"`
	BuildID     string `json:"build_id,omitempty"`
}

// RuntimeState is what the Go runtime's own variables said at the time of
// the crash, read from the core: the settings the runbook checks compare
// with the container's limits.
type RuntimeState struct {
	GOMAXPROCS int `json:"gomaxprocs,omitempty"`
	// Threads is how many OS threads the runtime had started and not freed.
	Threads int `json:"threads,omitempty"`
	// MaxThreads is the runtime's thread limit (debug.SetMaxThreads).
	MaxThreads int `json:"max_threads,omitempty"`
	// MemoryLimit is the soft memory limit in bytes (GOMEMLIMIT), absent
	// when unlimited.
	MemoryLimit int64 `json:"memory_limit,omitempty"`
	// GCPercent is GOGC; -1 when the collector is off.
	GCPercent int `json:"gc_percent"`
	// HeapLive is the bytes the collector considered live at the crash.
	HeapLive uint64 `json:"heap_live,omitempty"`
}

// Goroutine is one goroutine with its stack, innermost frame first.
type Goroutine struct {
	ID           int64             `json:"id"`
	Status       string            `json:"status"`
	WaitReason   string            `json:"wait_reason,omitempty"`
	WaitMinutes  int64             `json:"wait_minutes,omitempty"`
	ThreadID     int               `json:"thread_id,omitempty"`
	CreatedBy    string            `json:"created_by,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Frames       []Frame           `json:"frames"`
	FramesElided int               `json:"frames_elided,omitempty"`
}

// Frame is one stack frame. PC is a "0x…" string.
type Frame struct {
	Function string `json:"function"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	PC       string `json:"pc,omitempty"`
}

// GoroutineGroup buckets goroutines with identical stacks.
type GoroutineGroup struct {
	Count        int     `json:"count"`
	Status       string  `json:"status"`
	WaitReason   string  `json:"wait_reason,omitempty"`
	CreatedBy    string  `json:"created_by,omitempty"`
	TopFrames    []Frame `json:"top_frames"`
	GoroutineIDs []int64 `json:"goroutine_ids"`
}

// Thread is one OS thread of the process at the time of the dump.
type Thread struct {
	ID       int    `json:"id"`
	PC       string `json:"pc,omitempty"`
	SP       string `json:"sp,omitempty"`
	Function string `json:"function,omitempty"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	// Frames is the thread's own stack, innermost first, where it says
	// more than the goroutines do: every thread of a C program, the dying
	// thread of a Go program (C frames of a cgo fault).
	Frames []Frame `json:"frames,omitempty"`
}

// Severity is how much a diagnosis matters.
type Severity string

// Severities of Diagnosis.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Diagnosis is one runbook check that fired.
type Diagnosis struct {
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	Evidence string   `json:"evidence,omitempty"`
}

// Artifacts describes the stored core and executable.
type Artifacts struct {
	Core       CoreArtifact     `json:"core"`
	Executable ExeArtifact      `json:"executable"`
	Log        *LogArtifact     `json:"log,omitempty"`
	Console    *ConsoleArtifact `json:"console,omitempty"`
}

// CrashingGoroutineReport returns the crashing goroutine, or nil.
func (r *Report) CrashingGoroutineReport() *Goroutine {
	if r.CrashingGoroutine == 0 {
		return nil
	}
	for i := range r.Goroutines {
		if r.Goroutines[i].ID == r.CrashingGoroutine {
			return &r.Goroutines[i]
		}
	}
	return nil
}

// Version is what a report says about the build that crashed, for telling
// builds apart: the main module's version, else the VCS revision, else the
// Go build ID.
func (r *Report) Version() string {
	if r.Go == nil {
		return r.Artifacts.Executable.ContentID()
	}
	switch {
	case r.Go.MainVersion != "" && r.Go.MainVersion != "(devel)":
		return r.Go.MainVersion
	case r.Go.VCSRevision != "":
		return r.Go.VCSRevision
	case r.Go.BuildID != "":
		return r.Go.BuildID
	}
	return r.Artifacts.Executable.ContentID()
}

// Workload names where a crash ran: namespace/pod for Kubernetes, else the
// executable's path.
func (r *Report) Workload() string {
	if c := r.Container; c != nil && c.Pod != "" {
		return c.Namespace + "/" + c.Pod
	}
	return r.Process.Exe
}

// Summary returns a copy of r without goroutines and threads: what lists and
// queue messages carry.
func (r *Report) Summary() *Report {
	s := *r
	if g := r.CrashingGoroutineReport(); g != nil {
		s.TopFrames = topFrames(g.Frames)
	} else if th := r.dyingThread(); th != nil {
		// A C program has no goroutines: its dying thread's stack is the one.
		s.TopFrames = topFrames(th.Frames)
	}
	s.Goroutines = nil
	s.Threads = nil
	s.GoroutineGroups = nil
	return &s
}

// dyingThread is the thread the kernel reported as the one that died, when
// the report has its stack.
func (r *Report) dyingThread() *Thread {
	for i := range r.Threads {
		if th := &r.Threads[i]; th.ID == r.Process.TID && r.Process.TID != 0 && len(th.Frames) > 0 {
			return th
		}
	}
	return nil
}

// Runtime reports whether f is the Go runtime's own machinery (its panic,
// signal and scheduler frames) rather than the program's code.
func (f Frame) Runtime() bool {
	return f.Function == "panic" || strings.HasPrefix(f.Function, "runtime.")
}

// OwnFrame is the innermost frame of the program's own code: where a parked
// goroutine waits, or where a crash started. A stack entirely inside the
// runtime gives its innermost frame.
func OwnFrame(frames []Frame) Frame {
	for _, f := range frames {
		if !f.Runtime() {
			return f
		}
	}
	if len(frames) == 0 {
		return Frame{}
	}
	return frames[0]
}

// SummaryFrames is how many frames of the crashing goroutine a summary keeps
// in TopFrames.
const SummaryFrames = 8

// topFrames starts at the first frame that is not the runtime's panic or
// signal machinery, which is where the reader's own code went wrong; a crash
// entirely inside the runtime keeps the runtime's frames.
func topFrames(frames []Frame) []Frame {
	start := 0
	for i, f := range frames {
		if !f.Runtime() {
			start = i
			break
		}
	}
	end := min(len(frames), start+SummaryFrames)
	return append([]Frame(nil), frames[start:end]...)
}

// NewReport starts a report from a crash manifest: everything the collector and
// agent knew before analysis.
func NewReport(c *Crash) *Report {
	r := &Report{
		Schema:       ReportSchema,
		ID:           c.ID,
		Status:       StatusPending,
		CapturedAt:   c.CapturedAt,
		Node:         c.Node,
		Process:      c.Process,
		Container:    c.Container,
		Termination:  c.Termination,
		CgroupLimits: c.CgroupLimits,
		Artifacts:    Artifacts{Core: c.Core, Executable: c.Executable, Log: c.Log, Console: c.Console},
		Go:           c.Go,
		Arch:         c.Arch,
		Timings:      c.Timings,
		Revision:     c.Revision,
	}
	if c.Signal.Number != 0 {
		s := c.Signal
		r.Signal = &s
	}
	return r
}
