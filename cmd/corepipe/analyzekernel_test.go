package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/corepipe/corepipe"
)

// analyze --kernel-log reads a real serial console capture and a pstore
// record (by its header) into kernel_panic reports.
func TestAnalyzeKernelLog(t *testing.T) {
	serial, err := os.ReadFile("../../kernlog/testdata/qemu-sysrq-serial.log")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pstore := filepath.Join(dir, "record")
	if err := os.WriteFile(pstore, append([]byte("Panic#1 Part1\n"), serial...), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, source := range map[string]string{"../../kernlog/testdata/qemu-sysrq-serial.log": corepipe.SourceConsole, pstore: corepipe.SourcePstore} {
		var out bytes.Buffer
		if err := runCLI(context.Background(), &out, nil, "analyze", "--kernel-log", path); err != nil {
			t.Fatal(err)
		}
		var r corepipe.Report
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Kind != corepipe.KindKernelPanic || r.Source != source || r.Kernel == nil || r.Kernel.Message != "sysrq triggered crash" || r.Arch != "amd64" {
			t.Errorf("%s: kind %q source %q kernel %+v", path, r.Kind, r.Source, r.Kernel)
		}
	}
}

func TestAnalyzeKernelLogWithoutPanic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dmesg")
	os.WriteFile(path, []byte("[    0.000000] Linux version 6.1.0\n"), 0o600)
	err := runCLI(context.Background(), &bytes.Buffer{}, nil, "analyze", "--kernel-log", path)
	var inv invalidInput
	if !errors.As(err, &inv) {
		t.Fatalf("err %v, want invalid input", err)
	}
}
