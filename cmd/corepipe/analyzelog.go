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
	var in io.Reader = cmd.InOrStdin()
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return invalidInput{fmt.Errorf("open log: %w", err)}
		}
		defer f.Close()
		in = f
	}
	found, err := containerlog.Parse(cmd.Context(), in, "", gotrace.Options{})
	if errors.Is(err, gotrace.ErrNoCrash) {
		return invalidInput{fmt.Errorf("%s: %w", displayName(path), err)}
	}
	if err != nil {
		return err
	}
	r := &corepipe.Report{Schema: corepipe.ReportSchema}
	analyzer.FromTraceback(r, found, corepipe.SourceLog)
	analyzer.Enrich(r, nil)
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
