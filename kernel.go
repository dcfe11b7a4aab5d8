package corepipe

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"

	"github.com/oklog/ulid/v2"
)

// Where a kernel panic's console log came from (Report.Source,
// ConsoleArtifact.Source).
const (
	SourceNetconsole = "netconsole"
	SourcePstore     = "pstore"
	SourceKdump      = "kdump"
	SourceConsole    = "console"
)

// KernelPanic is what a node's kernel said as it died, read from its console
// log: the report's kernel section.
type KernelPanic struct {
	// Release is the kernel's release ("6.1.0-18-amd64").
	Release string `json:"release,omitempty"`
	// Message is what followed "Kernel panic - not syncing: ".
	Message string `json:"message,omitempty"`
	// FirstBug is the first BUG:, Oops:, general protection fault (else
	// WARNING:) line: the cause, when the panic is only its consequence
	// ("Fatal exception").
	FirstBug string `json:"first_bug,omitempty"`
	// Uptime is the kernel's timestamp of the panic line, "123.456789"
	// seconds since boot, when the log had one.
	Uptime   string      `json:"uptime,omitempty"`
	Task     *KernelTask `json:"task,omitempty"`
	Hardware string      `json:"hardware,omitempty"`
	// RIP is the instruction pointer of the dump, as printed; RIPUser is
	// set when it was in user space (code segment 0033).
	RIP       string        `json:"rip,omitempty"`
	RIPUser   bool          `json:"rip_user,omitempty"`
	CallTrace []KernelFrame `json:"call_trace,omitempty"`
	Modules   []string      `json:"modules,omitempty"`
	// Complete is set when the log held the panic line and a whole trace;
	// Incomplete says, one phrase each, what is missing otherwise
	// (sequence gaps, fragments, a trace cut short).
	Complete   bool     `json:"complete"`
	Incomplete []string `json:"incomplete,omitempty"`
	// Pods are the pods known to have run on the node when it died.
	Pods []PodRef `json:"pods,omitempty"`
}

// KernelTask is the task the kernel was running when it dumped ("CPU: 0
// PID: 1 Comm: init Tainted: G D ...").
type KernelTask struct {
	CPU  int    `json:"cpu"`
	PID  int    `json:"pid"`
	Comm string `json:"comm,omitempty"`
	// Tainted is the taint field as printed ("G      D  W  O"), Taints
	// its letters in words; both empty for "Not tainted".
	Tainted string   `json:"tainted,omitempty"`
	Taints  []string `json:"taints,omitempty"`
}

// KernelFrame is one call-trace line: "func+0x1a/0x30 [module]".
// Unreliable frames ("? func") are stale addresses found on the stack,
// not proven callers.
type KernelFrame struct {
	Function   string `json:"function"`
	Offset     string `json:"offset,omitempty"`
	Size       string `json:"size,omitempty"`
	Module     string `json:"module,omitempty"`
	Unreliable bool   `json:"unreliable,omitempty"`
}

// PodRef names a pod by namespace, name and UID.
type PodRef struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	UID       string `json:"uid,omitempty"`
}

// ConsoleArtifact is a node's console log around a kernel panic.
type ConsoleArtifact struct {
	// Source is SourceNetconsole, SourcePstore, SourceKdump or
	// SourceConsole.
	Source string `json:"source"`
	// Sender is the address the log came from (netconsole), or the file
	// it was read from.
	Sender string `json:"sender,omitempty"`
	Size   int64  `json:"size"`
	// Gaps is how many records the sender numbered and never delivered;
	// MissingFragments how many records arrived with fragments lost;
	// Dropped how many of the oldest lines the receiver let go to stay in
	// its bounds.
	Gaps             int `json:"gaps,omitempty"`
	MissingFragments int `json:"missing_fragments,omitempty"`
	Dropped          int `json:"dropped,omitempty"`
	// Key is the blob key of the log once stored.
	Key string `json:"key,omitempty"`
}

// taintNames are the letters of the kernel's taint field
// (Documentation/admin-guide/tainted-kernels.rst).
var taintNames = map[byte]string{
	'P': "proprietary module loaded",
	'F': "module force-loaded",
	'S': "unsafe SMP or out-of-spec CPU",
	'R': "module force-unloaded",
	'M': "machine check exception",
	'B': "bad page referenced",
	'U': "taint requested by user space",
	'D': "kernel died recently (oops or BUG)",
	'A': "ACPI table overridden",
	'W': "kernel warning issued",
	'C': "staging driver loaded",
	'I': "firmware bug workaround",
	'O': "out-of-tree module loaded",
	'E': "unsigned module loaded",
	'L': "soft lockup occurred",
	'K': "kernel live-patched",
	'X': "auxiliary taint (distribution)",
	'T': "built with struct randomization",
	'N': "in-kernel test run",
}

// TaintNames decodes a taint field ("G      D  W  O"): one phrase per
// letter set, in the field's order. G (proprietary-free) and spaces say
// nothing set.
func TaintNames(field string) []string {
	var out []string
	for i := 0; i < len(field); i++ {
		if name, ok := taintNames[field[i]]; ok {
			out = append(out, name)
		}
	}
	return out
}

// panicMachinery are the frames that print or raise a panic rather than
// cause it: a signature skips them.
var panicMachinery = []string{
	"dump_stack", "dump_stack_lvl", "show_stack", "panic", "vpanic", "__warn", "warn_slowpath_fmt",
	"oops_end", "die", "die_addr", "__die", "__die_body", "do_trap", "do_error_trap",
	"show_regs", "nmi_panic", "watchdog_timer_fn", "report_bug", "handle_bug", "exc_invalid_op",
	"asm_exc_invalid_op", "exc_general_protection", "asm_exc_general_protection", "page_fault_oops",
	"kernelmode_fixup_or_oops", "__bad_area_nosemaphore", "bad_area_nosemaphore", "do_user_addr_fault",
	"exc_page_fault", "asm_exc_page_fault", "do_exit", "make_task_dead", "rewind_stack_and_make_dead",
}

// KernelTopFrames are the first n reliable frames of k's trace after the
// machinery that prints the panic: where the bug is.
func KernelTopFrames(k *KernelPanic, n int) []KernelFrame {
	var out []KernelFrame
	for _, f := range k.CallTrace {
		if f.Unreliable || isPanicMachinery(f.Function) {
			continue
		}
		out = append(out, f)
		if len(out) == n {
			break
		}
	}
	return out
}

func isPanicMachinery(fn string) bool {
	base, _, _ := strings.Cut(fn, ".") // "__handle_sysrq.cold"
	for _, m := range panicMachinery {
		if base == m {
			return true
		}
	}
	return false
}

// KernelClass is a kernel panic's cause with what varies between
// occurrences (addresses, PIDs, counts) normalised: the first BUG/Oops line
// when there is one, else the panic message.
func KernelClass(k *KernelPanic) string {
	s := k.Message
	if k.FirstBug != "" {
		s = k.FirstBug
	}
	return normaliseKernelText(s)
}

// normaliseKernelText replaces hex and decimal numbers with N.
func normaliseKernelText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '0' && i+1 < len(s) && (s[i+1] == 'x' || s[i+1] == 'X'):
			i += 2
			for i < len(s) && isHex(s[i]) {
				i++
			}
			i--
			b.WriteByte('N')
		case c >= '0' && c <= '9':
			digit := func(c byte) bool { return c >= '0' && c <= '9' }
			if hexRun(s[i:]) {
				digit = isHex
			}
			for i < len(s) && digit(s[i]) {
				i++
			}
			i--
			b.WriteByte('N')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// hexRun reports whether s starts a run of hex digits of at least 8: an
// address printed without 0x ("ffff8881...").
func hexRun(s string) bool {
	n := 0
	for n < len(s) && isHex(s[n]) {
		n++
	}
	return n >= 8
}

// KernelTitle is the one line of a kernel panic: "kernel panic: Fatal
// exception (BUG: kernel NULL pointer dereference) in mydrv_probe [mydrv]".
func KernelTitle(k *KernelPanic) string {
	s := "kernel panic"
	if k.Message != "" {
		s += ": " + k.Message
	}
	if k.FirstBug != "" && !strings.Contains(k.Message, k.FirstBug) {
		s += " (" + strings.TrimSpace(k.FirstBug) + ")"
	}
	if top := KernelTopFrames(k, 1); len(top) == 1 {
		s += " in " + top[0].Function
		if top[0].Module != "" {
			s += " [" + top[0].Module + "]"
		}
	}
	return s
}

// KernelPanicID is the crash ID of a kernel panic, derived only from what
// the kernel printed, so that every copy of one panic gets one ID: two
// receivers of the same datagrams, a replay of them, and the same panic
// read back from pstore or kdump after the reboot, which the queue then
// deduplicates.
//
// The rule: the panic message and the printk timestamp of its line, to the
// microsecond, and nothing else. Every copy carries that line — a pstore
// record is the log's tail, cut into parts, and may lack the BUG line and
// the trace that netconsole delivered, or the reverse after a lost
// datagram — and the timestamp tells one boot's panic from another's. The
// node is not part of the ID: the receiver names a node by its address or
// a name from the cluster, the agent by its own name, and they need not
// agree. Only when the log has no timestamps (printk.time=0) does node
// enter the ID, with the cause and the trace, since nothing the kernel
// printed then tells two nodes' panics apart. Its time part comes from the
// hash too, since a kernel log has no wall clock; crashes are ordered by
// captured_at.
func KernelPanicID(node string, k *KernelPanic) string {
	h := sha256.New()
	if k.Uptime != "" {
		fmt.Fprintf(h, "corepipe/kernel_panic/v2\x00%s\x00%s\x00", k.Message, k.Uptime)
	} else {
		fmt.Fprintf(h, "corepipe/kernel_panic/v2-untimed\x00%s\x00%s\x00%s\x00", node, k.Message, k.FirstBug)
		for _, f := range k.CallTrace {
			fmt.Fprintf(h, "%s+%s\x00", f.Function, f.Offset)
		}
	}
	sum := h.Sum(nil)
	ms := uint64(sum[0])<<40 | uint64(sum[1])<<32 | uint64(sum[2])<<24 | uint64(sum[3])<<16 | uint64(sum[4])<<8 | uint64(sum[5])
	return ulid.MustNew(ms&ulid.MaxTime(), bytes.NewReader(sum[6:16])).String()
}

// writeKernelText is the kernel section of a report's text form.
func writeKernelText(w io.Writer, k *KernelPanic) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("kernel:    %s\n", orUnknown(k.Release))
	p("panic:     %s\n", k.Message)
	if k.FirstBug != "" {
		p("cause:     %s\n", k.FirstBug)
	}
	if t := k.Task; t != nil {
		p("task:      CPU %d PID %d %s", t.CPU, t.PID, t.Comm)
		if len(t.Taints) > 0 {
			p(" (tainted: %s)", strings.Join(t.Taints, ", "))
		}
		p("\n")
	}
	if k.Hardware != "" {
		p("hardware:  %s\n", k.Hardware)
	}
	if k.RIP != "" {
		where := "kernel"
		if k.RIPUser {
			where = "user space"
		}
		p("RIP:       %s (%s)\n", k.RIP, where)
	}
	for _, pod := range k.Pods {
		p("pod:       %s/%s\n", pod.Namespace, pod.Pod)
	}
	if len(k.CallTrace) > 0 {
		p("\ncall trace:\n")
		for _, f := range k.CallTrace {
			mark := "  "
			if f.Unreliable {
				mark = "? "
			}
			p("  %s%s+%s/%s", mark, f.Function, f.Offset, f.Size)
			if f.Module != "" {
				p(" [%s]", f.Module)
			}
			p("\n")
		}
	}
	if len(k.Modules) > 0 {
		p("\nmodules:   %s\n", strings.Join(k.Modules, " "))
	}
}
