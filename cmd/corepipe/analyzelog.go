package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/containerlog"
	"github.com/corepipe/corepipe/gotrace"
)

// analyzeLog prints the report of the last Go crash in a log file, or in
// standard input for "-".
func analyzeLog(cmd *cobra.Command, path, output string) error {
	return analyzeInput(cmd, path, output, "log", gotrace.ErrNoCrash, func(in io.Reader, r *corepipe.Report) error {
		found, err := containerlog.Parse(cmd.Context(), in, "", gotrace.Options{})
		if err != nil {
			return err
		}
		analyzer.FromTraceback(r, found, corepipe.SourceLog)
		analyzer.Enrich(r, nil)
		return nil
	})
}

// analyzeInput prints the report analyse makes of the file at path, or of
// standard input for "-", as text or JSON. A file that cannot be opened, or
// in which analyse finds nothing (an error that is none), is invalid input.
func analyzeInput(cmd *cobra.Command, path, output, what string, none error, analyse func(in io.Reader, r *corepipe.Report) error) error {
	var in io.Reader = cmd.InOrStdin()
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return invalidInput{fmt.Errorf("open %s: %w", what, err)}
		}
		defer f.Close()
		in = f
	}
	r := &corepipe.Report{Schema: corepipe.ReportSchema}
	err := analyse(in, r)
	if errors.Is(err, none) {
		return invalidInput{fmt.Errorf("%s: %w", displayName(path), err)}
	}
	if err != nil {
		return err
	}
	if output == "text" {
		return r.WriteText(cmd.OutOrStdout())
	}
	return r.WriteJSON(cmd.OutOrStdout(), true)
}

func displayName(path string) string {
	if path == "-" {
		return "standard input"
	}
	return path
}
