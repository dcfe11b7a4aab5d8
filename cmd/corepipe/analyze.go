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
		grown := tuneGC()
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
		r, err := inspect.Inspect(cmd.Context(), args[0], *exe, inspect.Options{DebugInfoDirs: *debugDirs, Grown: grown})
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

// tuneGC bounds the analysis's memory by what it must hold, and returns
// what inspect calls as that grows. Delve's debug information is live from
// the moment it is read, and on a big binary (MinIO's, 150 MB) it alone is
// larger than any fixed soft limit that suits a small one: under a fixed
// 160 MiB the collector ran without pause, a third of the CPU. So the soft
// limit follows what is live: once the debug information is read, a
// collection measures it, and after each page of goroutines the limit is
// what the last collection found live plus analysisHeadroom, which also
// has the runtime return what delve's reading freed. Below the limit the
// collector keeps its default pace: GOGC 200 bought a tenth of the CPU for
// a quarter more peak RSS (100 000 parked goroutines: 105 MiB at 100,
// 127 MiB at 200). GOMEMLIMIT in the environment still wins, as GOGC does.
func tuneGC() (grown func(loaded bool)) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	return func(loaded bool) {
		if loaded {
			runtime.GC()
		}
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		if s[0].Value.Kind() == metrics.KindUint64 {
			debug.SetMemoryLimit(int64(s[0].Value.Uint64()) + analysisHeadroom)
		}
	}
}

// analysisHeadroom is how far the memory may grow past what the last
// collection found live: delve's garbage from a page of goroutines, and
// the report's JSON as it is written, fit.
const analysisHeadroom = 48 << 20

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
