package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"

	"github.com/spf13/cobra"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/analyzer/inspect"
)

// invalidInput marks errors about the core or executable given, so that the
// analyzer running this command as a child knows not to retry.
type invalidInput struct{ error }

func (invalidInput) ExitCode() int { return exitInvalid }

func analyzeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "analyze CORE | --log FILE | --kernel-log FILE",
		Short: "analyse one local core, or a log with a Go crash, and print its report",
		Long: `Analyse one core dump on this machine and print its report: JSON for
programs, or text for people. Without --exe, the executable is the one the
core says was mapped.

With --log, read a Go crash from a container log (CRI or docker json-file)
or plain stderr instead, "-" for standard input: the report of a crash that
left no core (source "log").

With --kernel-log, read a kernel panic from a console log, a netconsole
capture, a pstore record (/sys/fs/pstore/dmesg-*) or a kdump dmesg: a
report of kind "kernel_panic".`,
		Example: `  corepipe analyze core.1234 --exe ./myprog            # the report as JSON
  corepipe analyze core.1234 --exe ./myprog -o text    # for people
  kubectl logs web-7d9f --previous | corepipe analyze --log - -o text
  corepipe analyze --log /var/log/pods/shop_web-7d9f_0b8c/app/3.log
  corepipe analyze --kernel-log /sys/fs/pstore/dmesg-ramoops-0 -o text`,
	}
	logPath := cmd.Flags().String("log", "", "read the crash from this log (CRI, docker json-file or plain stderr; - for stdin) instead of a core")
	cmd.MarkFlagFilename("log")
	kernelLog := cmd.Flags().String("kernel-log", "", "read a kernel panic from this console log, pstore record or kdump dmesg (- for stdin) instead of a core")
	cmd.MarkFlagFilename("kernel-log")
	cmd.MarkFlagsMutuallyExclusive("log", "kernel-log")
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if *kernelLog != "" {
			return exactArgs(0, "no core with --kernel-log")(cmd, args)
		}
		if *logPath != "" {
			return exactArgs(0, "no core with --log")(cmd, args)
		}
		return exactArgs(1, "one core file, or --log FILE")(cmd, args)
	}
	exe := cmd.Flags().String("exe", "", "the crashed executable `file` (default: the one the core says was mapped)")
	var output string
	choiceVarP(cmd, &output, "output", "o", "output format", "json", "text")
	cmd.MarkFlagFilename("exe")
	debugDirs := cmd.Flags().StringArray("debug-dir", nil, "a `directory` of separate debug files (.build-id/xx/rest.debug) for an executable without DWARF (repeatable)")
	cmd.MarkFlagDirname("debug-dir")
	// The analyzer's child gets the crash's manifest, for the diagnosis.
	manifest := cmd.Flags().String("manifest", "", "the crash manifest (JSON) the analyzer has for this core")
	cmd.Flags().MarkHidden("manifest")
	// For whoever measures the analysis (scripts/bench-analyzer.sh, issue
	// 12): Go's CPU profile of the whole command, and a heap profile of
	// what was allocated, written as the command ends.
	cpuProfile := cmd.Flags().String("cpuprofile", "", "write a CPU profile of the analysis to this `file`")
	memProfile := cmd.Flags().String("memprofile", "", "write a heap profile (allocations) of the analysis to this `file`")
	cmd.Flags().MarkHidden("cpuprofile")
	cmd.Flags().MarkHidden("memprofile")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *kernelLog != "" {
			return analyzeKernelLog(cmd, *kernelLog, output)
		}
		if *logPath != "" {
			return analyzeLog(cmd, *logPath, output)
		}
		loaded := tuneGC()
		stopProfiles, err := startProfiles(*cpuProfile, *memProfile)
		if err != nil {
			return err
		}
		defer stopProfiles()
		var crash *corepipe.Crash
		if *manifest != "" {
			if crash, err = analyzer.ReadManifest(*manifest); err != nil {
				return err
			}
		}
		r, err := inspect.Inspect(cmd.Context(), args[0], *exe, inspect.Options{DebugInfoDirs: *debugDirs, Loaded: loaded})
		if err != nil {
			if errors.Is(err, corepipe.ErrInvalid) || errors.Is(err, corepipe.ErrNotFound) {
				return invalidInput{err}
			}
			return err
		}
		r = analyzer.Complete(r, crash)
		if output == "text" {
			return r.WriteText(cmd.OutOrStdout())
		}
		return r.WriteJSON(cmd.OutOrStdout(), true)
	}
	return cmd
}

// tuneGC trades memory the analysis can spare for the time the collector
// takes, in two steps, and returns the second, for when delve has read the
// executable's debug information. Until then the collector runs at its
// default pace: that information is live from the moment it is read, and
// on a big binary (MinIO's, 150 MB) it alone is larger than any fixed soft
// limit that suits a small one, under which the collector would run
// without pause (measured: a third of the CPU). Once it is read, the soft
// limit becomes what is live then plus analysisHeadroom, with GOGC 200
// below it: reading 100 000 goroutines allocates gigabytes of short-lived
// garbage in delve, and the limit is what keeps the peak within the
// analyzer's budget, whatever the binary. GOGC and GOMEMLIMIT in the
// environment still win.
func tuneGC() (loaded func()) {
	gogc, limit := os.Getenv("GOGC") == "", os.Getenv("GOMEMLIMIT") == ""
	return func() {
		if !limit && !gogc {
			return
		}
		runtime.GC()
		if limit {
			s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
			metrics.Read(s)
			live := int64(0)
			if s[0].Value.Kind() == metrics.KindUint64 {
				live = int64(s[0].Value.Uint64())
			}
			debug.SetMemoryLimit(live + analysisHeadroom)
		}
		if gogc {
			debug.SetGCPercent(200)
		}
	}
}

// analysisHeadroom is how far the heap may grow past the debug information
// while goroutines are read: the report of 100 000 goroutines and delve's
// caches of one page of them fit (peak RSS about 120 MiB on such a core).
const analysisHeadroom = 80 << 20

// startProfiles starts a CPU profile into cpu and arranges a heap profile
// into mem ("" for neither), returning what ends them.
func startProfiles(cpu, mem string) (stop func(), err error) {
	var cpuFile *os.File
	if cpu != "" {
		if cpuFile, err = os.Create(cpu); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(cpuFile); err != nil {
			cpuFile.Close()
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
	}
	if mem != "" {
		runtime.MemProfileRate = 64 << 10
	}
	return func() {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
		}
		if mem != "" {
			if f, err := os.Create(mem); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
	}, nil
}
