package analyzer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/kernlog"
)

// maxConsoleLog bounds what is read of a stored console log: the receiver
// keeps a few hundred KiB of each node, and nothing larger is trusted.
const maxConsoleLog = 16 << 20

// KernelSignatureVersion prefixes kernel panics' signatures, apart from Go
// crashes' (signature.Version), since their inputs differ.
const KernelSignatureVersion = "kpanic/v1"

// Diagnosis codes of kernel panics.
const (
	CodeKernelSysrq      = "kernel_sysrq"
	CodeKernelHungTask   = "kernel_hung_task"
	CodeKernelLockup     = "kernel_lockup"
	CodeKernelOOM        = "kernel_oom_panic"
	CodeKernelHardware   = "kernel_hardware"
	CodeKernelNullModule = "kernel_null_dereference_in_module"
	CodeKernelBoot       = "kernel_boot"
)

// analyseKernel reports a kernel panic from the node's stored console log.
func (a *Analyzer) analyseKernel(ctx context.Context, c *corepipe.Crash) (*corepipe.Report, error) {
	rc, err := a.cfg.Blobs.Get(ctx, c.Console.Key)
	if err != nil {
		return nil, fmt.Errorf("fetch console log: %w", err)
	}
	defer rc.Close()
	k, err := kernlog.Parse(io.LimitReader(rc, maxConsoleLog))
	if errors.Is(err, kernlog.ErrNoPanic) {
		return nil, fmt.Errorf("%w: console log: %v", corepipe.ErrInvalid, err)
	}
	if err != nil {
		return nil, err
	}
	r := corepipe.NewReport(c)
	FromKernelLog(r, k, c.Console, c.Pods)
	return r, nil
}

// FromKernelLog fills r with the panic k read from console, and the pods
// known to have died with the node. Everything that reads a kernel log (the
// analyzer, analyze --kernel-log) reports it through here.
func FromKernelLog(r *corepipe.Report, k *corepipe.KernelPanic, console *corepipe.ConsoleArtifact, pods []corepipe.PodRef) {
	r.Status = corepipe.StatusAnalyzed
	r.Kind = corepipe.KindKernelPanic
	r.Source = corepipe.SourceConsole
	if console != nil {
		r.Source = console.Source
		if console.Gaps > 0 {
			k.Incomplete = append(k.Incomplete, fmt.Sprintf("%d console records never arrived (sequence gaps)", console.Gaps))
		}
		if console.MissingFragments > 0 {
			k.Incomplete = append(k.Incomplete, fmt.Sprintf("%d console records arrived with fragments missing", console.MissingFragments))
		}
		if console.Dropped > 0 {
			k.Incomplete = append(k.Incomplete, fmt.Sprintf("the %d oldest console lines were not kept", console.Dropped))
		}
		k.Complete = len(k.Incomplete) == 0
	}
	switch {
	case strings.HasSuffix(k.Release, "-amd64"), strings.Contains(k.Release, "x86_64"):
		r.Arch = "amd64"
	case strings.HasSuffix(k.Release, "-arm64"), strings.Contains(k.Release, "aarch64"):
		r.Arch = "arm64"
	}
	k.Pods = pods
	if len(pods) == 0 && r.Node != "" {
		r.Lacks = append(r.Lacks, "the pods on the node: none known when the panic was recorded")
	}
	if !k.Complete {
		r.Lacks = append(r.Lacks, k.Incomplete...)
	}
	r.Kernel = k
	r.Title = corepipe.KernelTitle(k)
	r.Signature = KernelSignature(k)
	r.Diagnosis = append(r.Diagnosis, KernelDiagnosis(k)...)
}

// KernelSignature groups kernel panics: the normalised cause and the top
// frames after the machinery that prints a panic, so that the same driver
// bug on fifty nodes is one group, whatever their addresses and PIDs.
func KernelSignature(k *corepipe.KernelPanic) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", corepipe.KernelClass(k))
	for _, f := range corepipe.KernelTopFrames(k, 5) {
		fmt.Fprintf(h, "%s [%s]\n", f.Function, f.Module)
	}
	return KernelSignatureVersion + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

// KernelDiagnosis names the kind of kernel death k was, with the line that
// says so.
func KernelDiagnosis(k *corepipe.KernelPanic) []corepipe.Diagnosis {
	msg, bug := k.Message, k.FirstBug
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(msg, s) || strings.Contains(bug, s) {
				return true
			}
		}
		return false
	}
	evidence := "Kernel panic - not syncing: " + msg
	if bug != "" {
		evidence = bug
	}
	var out []corepipe.Diagnosis
	add := func(code string, sev corepipe.Severity, text string) {
		out = append(out, corepipe.Diagnosis{Code: code, Severity: sev, Message: text, Evidence: evidence})
	}
	switch {
	case has("sysrq triggered crash"):
		add(CodeKernelSysrq, corepipe.SeverityInfo, "the panic was asked for: sysrq 'c' (echo c > /proc/sysrq-trigger), by a person or a watchdog")
	case has("hung_task: blocked tasks", "blocked for more than"):
		add(CodeKernelHungTask, corepipe.SeverityCritical, "a task stayed in uninterruptible sleep past kernel.hung_task_timeout_secs and kernel.hung_task_panic is set: usually stuck I/O (a dead disk, NFS, a storage driver)")
	case has("soft lockup", "softlockup", "hard LOCKUP", "hardlockup"):
		add(CodeKernelLockup, corepipe.SeverityCritical, "a CPU ran kernel code without yielding past the watchdog's threshold and the kernel is set to panic on it: a kernel or driver bug, or a starved virtual CPU")
	case has("Out of memory", "System is deadlocked on memory", "out of memory"):
		add(CodeKernelOOM, corepipe.SeverityCritical, "the node ran out of memory with vm.panic_on_oom set, or had nothing left to kill: look at the pods' memory limits and the node's allocatable memory")
	case has("Machine check", "machine check", "Hardware Error", "MCE"):
		add(CodeKernelHardware, corepipe.SeverityCritical, "the CPU reported a hardware error (machine check): replace or drain the node rather than look for a software bug")
	case has("VFS: Unable to mount root fs", "No working init found", "Attempted to kill init"):
		add(CodeKernelBoot, corepipe.SeverityCritical, "the node could not boot or its init died: its root file system, initramfs or init is broken")
	}
	if has("NULL pointer dereference") {
		for _, f := range corepipe.KernelTopFrames(k, 1) {
			if f.Module != "" {
				add(CodeKernelNullModule, corepipe.SeverityCritical, fmt.Sprintf("a NULL pointer dereference in module %s (%s): a driver bug; check the module's version against the kernel", f.Module, f.Function))
			}
		}
	}
	if k.Task != nil && strings.ContainsRune(k.Task.Tainted, 'M') && !has("Machine check", "machine check", "Hardware Error", "MCE") {
		add(CodeKernelHardware, corepipe.SeverityWarning, "the kernel was tainted by an earlier machine check: the hardware may be at fault")
	}
	return out
}
