package corefile

import (
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/corepipe/corepipe/internal/testkit/deptest"
)

// TestNoDelve holds the line between this package and package inspect:
// what is read here is read before delve, and fuzzed without it.
func TestNoDelve(t *testing.T) {
	deptest.DepChecker{Package: ".", BadDeps: map[string]string{
		"github.com/go-delve/...": "the pre-checks run before delve sees the core and are fuzzed without it",
	}}.Check(t)
}

// TestReadsSynthCore reads back every note synthSeed wrote, and matches the
// executable whose first page the core holds, and no other.
func TestReadsSynthCore(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("synthSeed is an amd64 core")
	}
	path := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(path, synthSeed(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Threads) != 1 || c.Threads[0].TID != 42 || c.KillSignal() != 6 {
		t.Errorf("threads %+v, kill signal %d; want thread 42 dumped for signal 6", c.Threads, c.KillSignal())
	}
	if c.Entry != 0x401000 || c.Truncated != nil {
		t.Errorf("entry %#x, truncated %+v", c.Entry, c.Truncated)
	}
	if p, base, ok := c.MainMapping(); !ok || p != "/bin/prog" || base != 0x400000 {
		t.Errorf("MainMapping = %q, %#x, %v", p, base, ok)
	}
	exe := &Exe{Path: "prog", Type: elf.ET_EXEC, Machine: elf.EM_X86_64, Entry: 0x401000, FirstVaddr: 0x400000, Head: make([]byte, HeadSize)}
	if err := c.CheckExe(exe); err != nil {
		t.Errorf("CheckExe of the program that dumped the core: %v", err)
	}
	exe.Head[100] = 1
	if err := c.CheckExe(exe); !errors.Is(err, ErrWrongExe) {
		t.Errorf("CheckExe of another program = %v, want ErrWrongExe", err)
	}
}
