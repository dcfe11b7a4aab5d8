package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/kernlog"
)

// analyzeKernelLog prints the report of the kernel panic in a console log,
// pstore record or kdump dmesg, or in standard input for "-".
func analyzeKernelLog(cmd *cobra.Command, path, output string) error {
	var in io.Reader = cmd.InOrStdin()
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return invalidInput{fmt.Errorf("open kernel log: %w", err)}
		}
		defer f.Close()
		in = f
	}
	head := make([]byte, 64)
	n, _ := io.ReadFull(in, head)
	head = head[:n]
	k, err := kernlog.Parse(io.MultiReader(strings.NewReader(string(head)), in))
	if errors.Is(err, kernlog.ErrNoPanic) {
		return invalidInput{fmt.Errorf("%s: %w", displayName(path), err)}
	}
	if err != nil {
		return err
	}
	r := &corepipe.Report{Schema: corepipe.ReportSchema}
	analyzer.FromKernelLog(r, k, &corepipe.ConsoleArtifact{Source: kernelLogSource(path, string(head)), Sender: path}, nil)
	if output == "text" {
		return r.WriteText(cmd.OutOrStdout())
	}
	return r.WriteJSON(cmd.OutOrStdout(), true)
}

// kernelLogSource tells a pstore record (its "Panic#1 Part1" header, or
// where pstore and systemd-pstore keep them) and a kdump dmesg (under
// /var/crash, dmesg.*) from any other console log.
func kernelLogSource(path, head string) string {
	base := filepath.Base(path)
	switch {
	case strings.HasPrefix(head, "Panic#"), strings.HasPrefix(head, "Oops#"),
		strings.HasPrefix(path, "/sys/fs/pstore/"), strings.HasPrefix(path, "/var/lib/systemd/pstore/"),
		strings.HasPrefix(base, "dmesg-ramoops-"), strings.HasPrefix(base, "dmesg-efi-"):
		return corepipe.SourcePstore
	case strings.HasPrefix(path, "/var/crash/"), strings.HasPrefix(base, "dmesg."), strings.HasPrefix(base, "vmcore-dmesg"):
		return corepipe.SourceKdump
	}
	return corepipe.SourceConsole
}
