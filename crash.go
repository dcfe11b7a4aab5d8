package corepipe

import "time"

// ManifestSchema is the version of the Crash JSON written by the collector.
const ManifestSchema = 1

// Crash is the manifest of one captured crash: everything the collector learnt
// about the dying process, what it decided about the core, and where the agent
// stored the artifacts. It travels as JSON from the spool through the queue to
// the analyzer, which copies it into the Report.
type Crash struct {
	Schema     int        `json:"schema"`
	ID         string     `json:"id"`
	CapturedAt time.Time  `json:"captured_at"`
	Node       string     `json:"node"`
	Process    Process    `json:"process"`
	Signal     Signal     `json:"signal"`
	Container  *Container `json:"container,omitempty"`
	// Cgroup is the process's cgroup v2 path (or v1 lines joined by ';').
	Cgroup string `json:"cgroup,omitempty"`
	// CgroupLimits are the cgroup v2 limits and usage of that cgroup; nil
	// when none could be read (cgroup v1, or a path outside the hierarchy).
	CgroupLimits *CgroupLimits `json:"cgroup_limits,omitempty"`
	// Environ holds only the allowlisted variables of the process.
	Environ map[string]string `json:"environ,omitempty"`
	// Limits are the soft resource limits of the process, by /proc name.
	Limits map[string]string `json:"limits,omitempty"`
	// Mappings summarises the process's memory map.
	Mappings *Mappings `json:"mappings,omitempty"`
	// Termination is set for crashes seen by how a container ended rather
	// than by a core: an OOM kill never leaves one.
	Termination *Termination `json:"termination,omitempty"`
	Core        CoreArtifact `json:"core"`
	Executable  ExeArtifact  `json:"executable"`
	// Go is the build information the crashed program reported of itself
	// (a crash-output file's header), when no executable says it.
	Go *GoInfo `json:"go,omitempty"`
	// Arch is the crashed program's GOARCH, when known before analysis.
	Arch string `json:"arch,omitempty"`
	// Log is the excerpt of the container's log (or of a crash-output
	// file) that holds the crash, when one was kept.
	Log *LogArtifact `json:"log,omitempty"`
	// Console is the node's console log around a kernel panic.
	Console *ConsoleArtifact `json:"console,omitempty"`
	// Pods are the pods known to have run on the node when its kernel
	// panicked.
	Pods []PodRef `json:"pods,omitempty"`
	// NodeReport is the blob key of the report the agent made on the node
	// from a core it kept there (see CoreLocation): the analyzer takes it
	// in place of a core it does not have.
	NodeReport string `json:"node_report,omitempty"`
	// Notes records every decision the collector and agent took about this
	// crash (truncated, dropped, rate limited), one sentence each.
	Notes   []string `json:"notes,omitempty"`
	Timings Timings  `json:"timings"`
	// Revision is which analysis of the crash a queued message asks for:
	// 0 the first, n the nth re-analysis (corepipe reanalyze). The report
	// it gives carries the same number.
	Revision int `json:"revision,omitempty"`
}

// Termination is how a container ended, as Kubernetes recorded it.
type Termination struct {
	ExitCode     int       `json:"exit_code"`
	Reason       string    `json:"reason,omitempty"`
	Signal       int       `json:"signal,omitempty"`
	Message      string    `json:"message,omitempty"`
	RestartCount int       `json:"restart_count,omitempty"`
	StartedAt    time.Time `json:"started_at,omitempty"`
	FinishedAt   time.Time `json:"finished_at,omitempty"`
	// CoreID links to the core-based crash of the same container and time,
	// when there is one.
	CoreID string `json:"core_id,omitempty"`
}

// Process describes the crashed process as the node saw it.
type Process struct {
	PID        int      `json:"pid"`
	NSPID      int      `json:"ns_pid,omitempty"`
	TID        int      `json:"tid,omitempty"`
	Exe        string   `json:"exe,omitempty"`
	Comm       string   `json:"comm,omitempty"`
	Cmdline    []string `json:"cmdline,omitempty"`
	UID        int      `json:"uid"`
	GID        int      `json:"gid"`
	Threads    int      `json:"threads,omitempty"`
	RlimitCore string   `json:"rlimit_core,omitempty"`
	// Dumpable is the kernel's dump mode (%d): 1 normal, 2 a setuid or
	// otherwise privileged process dumped under suid_dumpable=2, whose
	// core holds memory its user may not read.
	Dumpable int `json:"dumpable,omitempty"`
	// VmRSS and VmPeak in bytes, from /proc/<pid>/status.
	RSS  int64 `json:"rss,omitempty"`
	Peak int64 `json:"vm_peak,omitempty"`
}

// Container is where the process ran. The collector fills ID and Runtime from
// the cgroup; the agent adds the Kubernetes fields.
type Container struct {
	ID        string            `json:"id,omitempty"`
	Runtime   string            `json:"runtime,omitempty"`
	Namespace string            `json:"namespace,omitempty"`
	Pod       string            `json:"pod,omitempty"`
	PodUID    string            `json:"pod_uid,omitempty"`
	Container string            `json:"container,omitempty"`
	Image     string            `json:"image,omitempty"`
	ImageID   string            `json:"image_id,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Owner is the workload that runs the pod.
	Owner *Owner `json:"owner,omitempty"`
}

// Owner is a workload by kind ("Deployment", "StatefulSet", "DaemonSet",
// "Job", or the kind of another controller) and name.
type Owner struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// Mappings is what the collector keeps of /proc/<pid>/maps: not the map
// itself (the core holds it), but what tells whether an executable belongs
// to the core and how much the process had mapped from files.
type Mappings struct {
	// Files is how many distinct files were mapped, FileBytes their total
	// mapped size.
	Files     int   `json:"files"`
	FileBytes int64 `json:"file_bytes"`
	// ExeBase is the lowest address the executable was mapped at, "0x…";
	// ExeDeleted is set when the file on disk had been deleted or replaced
	// while the process ran (the held handle still captured it).
	ExeBase    string `json:"exe_base,omitempty"`
	ExeDeleted bool   `json:"exe_deleted,omitempty"`
}

// Signal is a signal by number and name ("SIGSEGV").
type Signal struct {
	Number int    `json:"number"`
	Name   string `json:"name,omitempty"`
}

// CoreArtifact describes the core file. Size and SHA256 are of the raw core,
// StoredSize of the compressed object.
type CoreArtifact struct {
	Size       int64  `json:"size"`
	StoredSize int64  `json:"stored_size"`
	SHA256     string `json:"sha256,omitempty"`
	Truncated  bool   `json:"truncated,omitempty"`
	// Dropped says why no core was kept ("" when it was).
	Dropped string `json:"dropped,omitempty"`
	// Key is the blob key of the compressed core once stored.
	Key string `json:"key,omitempty"`
	// Location is set by a node agent that applies the fleet's core
	// policy: where the core is when it is not stored. Use Where.
	Location *CoreLocation `json:"location,omitempty"`
}

// LogArtifact is the bounded excerpt of a log that holds a crash's
// traceback: never the whole log, only the part from the last crash on.
type LogArtifact struct {
	// Source is SourceLog or SourceCrashOutput.
	Source string `json:"source"`
	// Path is the file on the node it was read from.
	Path string `json:"path,omitempty"`
	// Format is the log's format: "cri", "json-file" or "raw".
	Format string `json:"format,omitempty"`
	// Size is the excerpt's length in bytes; Truncated is set when the
	// crash was longer than the excerpt keeps.
	Size      int64 `json:"size"`
	Truncated bool  `json:"truncated,omitempty"`
	// Key is the blob key of the excerpt once stored.
	Key string `json:"key,omitempty"`
}

// ExeArtifact describes the crashed executable.
type ExeArtifact struct {
	Path      string `json:"path,omitempty"`
	BuildID   string `json:"build_id,omitempty"`
	GoBuildID string `json:"go_build_id,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	Size      int64  `json:"size,omitempty"`
	// Found is whether the executable itself was captured.
	Found bool `json:"found"`
	// Key is the blob key of the executable once stored.
	Key string `json:"key,omitempty"`
}

// Timings are the durations of each stage, in milliseconds.
type Timings struct {
	CaptureMS  int64 `json:"capture_ms"`
	UploadMS   int64 `json:"upload_ms,omitempty"`
	QueueMS    int64 `json:"queue_ms,omitempty"`
	AnalysisMS int64 `json:"analysis_ms,omitempty"`
}

// ContentID is the key an executable is stored under: its GNU build ID, else
// its Go build ID, else its sha256.
func (e ExeArtifact) ContentID() string {
	switch {
	case e.BuildID != "":
		return e.BuildID
	case e.GoBuildID != "":
		return e.GoBuildID
	default:
		return e.SHA256
	}
}

// CgroupLimits are what the cgroup v2 files of the crashed process's cgroup
// said at the crash. A zero limit means none: either the file held "max"
// (unlimited) or it could not be read; a zero count means it was not read.
// The limits are the tightest of the cgroup and its ancestors, since a
// parent's limit binds its children; usage and counts are the cgroup's own.
type CgroupLimits struct {
	// MemoryMax is memory.max in bytes; MemoryCurrent and MemoryPeak are
	// memory.current and memory.peak (Linux 5.19+).
	MemoryMax     int64 `json:"memory_max,omitempty"`
	MemoryCurrent int64 `json:"memory_current,omitempty"`
	MemoryPeak    int64 `json:"memory_peak,omitempty"`
	// OOMKills is the oom_kill count of memory.events: processes of the
	// cgroup killed by an OOM killer.
	OOMKills int64 `json:"oom_kills,omitempty"`
	// PidsMax and PidsCurrent are pids.max and pids.current, which count
	// threads as well as processes.
	PidsMax     int64 `json:"pids_max,omitempty"`
	PidsCurrent int64 `json:"pids_current,omitempty"`
	// CPUQuotaUS and CPUPeriodUS are cpu.max: the cgroup may run
	// CPUQuotaUS microseconds every CPUPeriodUS (0 quota: no quota).
	CPUQuotaUS  int64 `json:"cpu_quota_us,omitempty"`
	CPUPeriodUS int64 `json:"cpu_period_us,omitempty"`
}
