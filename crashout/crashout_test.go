package crashout

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestWritesHeaderAndLock: with COREPIPE_CRASH_DIR set, the file exists at
// start-up with its header, private to the program's user, and locked.
func TestWritesHeaderAndLock(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(DirEnv, dir)
	t.Setenv("POD_NAME", "web-1")
	if err := enable(); err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	fi, err := os.Stat(Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || filepath.Dir(Path()) != dir {
		t.Errorf("crash file %s mode %v", Path(), fi.Mode())
	}
	b, _ := os.ReadFile(Path())
	if !strings.HasPrefix(string(b), "# corepipe-crashout/1 {") || !strings.Contains(string(b), `"pod":"web-1"`) {
		t.Errorf("header %q", b)
	}
	// flock(1) in another process cannot take the lock while we live.
	if err := exec.Command("flock", "--nonblock", Path(), "true").Run(); err == nil {
		t.Error("the crash file is not locked by its live writer")
	}
}

// BenchmarkEnable is what importing crashout costs a program at start-up:
// one file created, locked and given its header, and the runtime pointed at
// it.
func BenchmarkEnable(b *testing.B) {
	dir := b.TempDir()
	b.Setenv(DirEnv, dir)
	b.ReportAllocs()
	for range b.N {
		if err := enable(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		file.Close()
		os.Remove(Path())
		b.StartTimer()
	}
}
