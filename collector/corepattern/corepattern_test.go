package corepattern

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func fakeKernel(t *testing.T, pattern string, limit string) Kernel {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "core_pattern"), []byte(pattern+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "core_pipe_limit"), []byte(limit+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Kernel{SysDir: dir}
}

// installed is a Handler that has installed s over a fake kernel's
// default settings (core, no pipe limit).
func installed(t *testing.T, s Settings) Handler {
	t.Helper()
	h := Handler{Kernel: fakeKernel(t, "core", "0"), StateFile: filepath.Join(t.TempDir(), "state.json")}
	if err := h.Install(s); err != nil {
		t.Fatal(err)
	}
	return h
}

func mustRead(t *testing.T, k Kernel) Settings {
	t.Helper()
	s, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInstallRestore(t *testing.T) {
	want := Settings{Pattern: Pattern("/opt/corepipe-collector", "/var/spool"), PipeLimit: 16}
	h := installed(t, want)
	k := h.Kernel
	if got := mustRead(t, k); got != want {
		t.Fatalf("installed %+v, want %+v", got, want)
	}
	if err := h.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, k); got != (Settings{Pattern: "core"}) {
		t.Fatalf("restored %+v", got)
	}
	if _, err := os.Stat(h.StateFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state file left behind: %v", err)
	}
}

func TestInstallRefusesForeignPattern(t *testing.T) {
	foreign := "|/lib/systemd/systemd-coredump %P %u %g %s %t %c %h"
	k := fakeKernel(t, foreign, "16")
	h := Handler{Kernel: k, StateFile: filepath.Join(t.TempDir(), "state.json")}
	err := h.Install(Settings{Pattern: Pattern("/x/corepipe-collector", "/s"), PipeLimit: 4})
	if !errors.Is(err, ErrForeign) {
		t.Fatalf("Install over a foreign pattern: %v, want ErrForeign", err)
	}
	if got := mustRead(t, k); got.Pattern != foreign {
		t.Fatalf("pattern changed to %q", got.Pattern)
	}
	h.Force = true
	if err := h.Install(Settings{Pattern: Pattern("/x/corepipe-collector", "/s"), PipeLimit: 4}); err != nil {
		t.Fatal(err)
	}
	if err := h.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, k); got != (Settings{Pattern: foreign, PipeLimit: 16}) {
		t.Fatalf("restored %+v", got)
	}
}

// A killed agent leaves its handler installed and its state file behind; the
// next one must restore what was there before corepipe, not corepipe itself.
func TestInstallAfterKill(t *testing.T) {
	k := fakeKernel(t, "/var/crash/core.%p", "0")
	state := filepath.Join(t.TempDir(), "state.json")
	first := Handler{Kernel: k, StateFile: state, Force: true}
	ours := Settings{Pattern: Pattern("/a/corepipe-collector", "/s"), PipeLimit: 8}
	if err := first.Install(ours); err != nil {
		t.Fatal(err)
	}
	second := Handler{Kernel: k, StateFile: state}
	if err := second.Install(ours); err != nil {
		t.Fatalf("reinstall over our own stale handler: %v", err)
	}
	if err := second.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, k); got != (Settings{Pattern: "/var/crash/core.%p"}) {
		t.Fatalf("restored %+v", got)
	}
}

// If an operator replaced the handler while corepipe ran, restoring must not
// clobber their choice.
func TestRestoreKeepsReplacement(t *testing.T) {
	h := installed(t, Settings{Pattern: Pattern("/a/corepipe-collector", "/s"), PipeLimit: 8})
	k := h.Kernel
	theirs := Settings{Pattern: "|/usr/bin/other %p", PipeLimit: 2}
	if err := k.Write(theirs); err != nil {
		t.Fatal(err)
	}
	if err := h.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, k); got != theirs {
		t.Fatalf("restore replaced the operator's handler: %+v", got)
	}
}

func TestWriteRejectsLongPattern(t *testing.T) {
	k := fakeKernel(t, "core", "0")
	long := Pattern("/"+string(make([]byte, 100)), "/spool")
	if err := k.Write(Settings{Pattern: long}); err == nil {
		t.Fatal("a pattern longer than the kernel keeps was written")
	}
}

func TestOwned(t *testing.T) {
	for pattern, want := range map[string]bool{
		"|/usr/local/bin/corepipe-collector -spool /s %P": true,
		"|corepipe-collector":                             true,
		"/tmp/corepipe-collector":                         false,
		"|/usr/bin/corepipe-collector-old %P":             false,
		"core":                                            false,
		"|/lib/systemd/systemd-coredump %P":               false,
	} {
		if got := Owned(pattern); got != want {
			t.Errorf("Owned(%q) = %v, want %v", pattern, got, want)
		}
	}
}

func TestEnsure(t *testing.T) {
	want := Settings{Pattern: Pattern("/opt/corepipe-collector", "/var/spool"), PipeLimit: 16}
	h := installed(t, want)
	k := h.Kernel
	if replaced, err := h.Ensure(want); err != nil || replaced != nil {
		t.Fatalf("Ensure on an intact handler = %v, %v", replaced, err)
	}
	// Only the limit changed: still re-installed.
	if err := k.Write(Settings{Pattern: want.Pattern, PipeLimit: 0}); err != nil {
		t.Fatal(err)
	}
	if replaced, err := h.Ensure(want); err != nil || replaced == nil || replaced.PipeLimit != 0 || mustRead(t, k) != want {
		t.Fatalf("Ensure after the limit changed = %v, %v; kernel %+v", replaced, err, mustRead(t, k))
	}
	// A sysctl reset to the default: re-installed, and the default is what
	// a stop restores.
	if err := k.Write(Settings{Pattern: "core", PipeLimit: 0}); err != nil {
		t.Fatal(err)
	}
	if replaced, err := h.Ensure(want); err != nil || replaced == nil || replaced.Pattern != "core" || mustRead(t, k) != want {
		t.Fatalf("Ensure after a reset = %v, %v", replaced, err)
	}
	// Another handler is not replaced without Force.
	if err := k.Write(Settings{Pattern: "|/usr/share/apport/apport %p", PipeLimit: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Ensure(want); !errors.Is(err, ErrForeign) {
		t.Fatalf("Ensure over apport: %v, want ErrForeign", err)
	}
	h.Force = true
	if _, err := h.Ensure(want); err != nil || mustRead(t, k) != want {
		t.Fatalf("Ensure with Force: %v", err)
	}
	if err := h.Restore(); err != nil || mustRead(t, k).Pattern != "|/usr/share/apport/apport %p" {
		t.Fatalf("restored %+v, %v", mustRead(t, k), err)
	}
}

func TestInstallBinary(t *testing.T) {
	src := filepath.Join(t.TempDir(), "build")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho v1\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "host", "bin")
	dst, err := InstallBinary(src, dir)
	if err != nil {
		t.Fatal(err)
	}
	if dst != filepath.Join(dir, Marker) {
		t.Errorf("installed at %s", dst)
	}
	os.WriteFile(src, []byte("#!/bin/sh\necho v2\n"), 0o700)
	// The running binary's inode is replaced, not rewritten.
	before, _ := os.Stat(dst)
	if _, err := InstallBinary(src, dir); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "#!/bin/sh\necho v2\n" || after.Mode().Perm() != 0o755 || os.SameFile(before, after) {
		t.Errorf("installed %q mode %v, same inode %v", b, after.Mode(), os.SameFile(before, after))
	}
	if des, _ := os.ReadDir(dir); len(des) != 1 {
		t.Errorf("left beside it: %v", des)
	}
	if _, err := InstallBinary(filepath.Join(t.TempDir(), "missing"), dir); err == nil {
		t.Error("installed a missing binary")
	}
}
