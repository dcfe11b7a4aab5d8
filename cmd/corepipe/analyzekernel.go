package main

import (
	"io"
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
	return analyzeInput(cmd, path, output, "kernel log", kernlog.ErrNoPanic, func(in io.Reader, r *corepipe.Report) error {
		head := make([]byte, 64)
		n, _ := io.ReadFull(in, head)
		head = head[:n]
		k, err := kernlog.Parse(io.MultiReader(strings.NewReader(string(head)), in))
		if err != nil {
			return err
		}
		analyzer.FromKernelLog(r, k, &corepipe.ConsoleArtifact{Source: kernelLogSource(path, string(head)), Sender: path}, nil)
		return nil
	})
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
