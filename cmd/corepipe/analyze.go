package main

import (
	"errors"
	"os"
	"runtime/debug"

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
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *kernelLog != "" {
			return analyzeKernelLog(cmd, *kernelLog, output)
		}
		if *logPath != "" {
			return analyzeLog(cmd, *logPath, output)
		}
		tuneGC()
		var crash *corepipe.Crash
		if *manifest != "" {
			var err error
			if crash, err = analyzer.ReadManifest(*manifest); err != nil {
				return err
			}
		}
		r, err := inspect.Inspect(cmd.Context(), args[0], *exe, inspect.Options{DebugInfoDirs: *debugDirs})
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
// takes: reading 100 000 goroutines allocates gigabytes of short-lived
// garbage in delve, and at the default GOGC half the CPU goes to collecting
// it. The soft limit keeps the peak well inside the analyzer's memory
// budget (RSS about 210 MiB on a 100 000-goroutine core, against 256 MiB).
// GOGC and GOMEMLIMIT in the environment still win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(160 << 20)
	}
}
