package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/analyzer/inspect"
)

// invalidInput marks errors about the core or executable given, so that the
// analyzer running this command as a child knows not to retry.
type invalidInput struct{ error }

func (invalidInput) ExitCode() int { return exitInvalid }

func runAnalyze(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("analyze", flag.ContinueOnError)
	exe := fset.String("exe", "", "the crashed executable (default: the path recorded in the core)")
	output := fset.String("o", "json", "output format: json or text")
	fset.Usage = func() {
		fmt.Fprintln(fset.Output(), "usage: corepipe analyze [--exe FILE] [-o json|text] CORE")
		fset.PrintDefaults()
	}
	if err := parse(fset, args); err != nil {
		return err
	}
	tuneGC()
	if fset.NArg() != 1 {
		fset.Usage()
		return invalidInput{errors.New("analyze takes exactly one core file")}
	}
	if *output != "json" && *output != "text" {
		return invalidInput{fmt.Errorf("-o %q: want json or text", *output)}
	}
	r, err := inspect.Inspect(ctx, fset.Arg(0), *exe, inspect.Options{})
	if err != nil {
		if errors.Is(err, corepipe.ErrInvalid) || errors.Is(err, corepipe.ErrNotFound) {
			return invalidInput{err}
		}
		return err
	}
	analyzer.Enrich(r, nil)
	if *output == "text" {
		return r.WriteText(os.Stdout)
	}
	return r.WriteJSON(os.Stdout, true)
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
