package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestCrashStorm crashes one small program 200 times, eight at a time,
// through the real collector installed as the kernel's handler, with a rate
// limit and a spool max use that both bind. Every crash must leave a
// manifest; exactly the first N keep their core (or say the spool was
// full); the others say they were rate limited; and the spool, sampled
// while the storm runs, never holds more than max use.
func TestCrashStorm(t *testing.T) {
	holdCorePattern(t)
	const (
		crashes   = 200
		parallel  = 8
		rateLimit = 20
		// A kept crash takes about 2 MiB (its executable, copied until the
		// agent has stored it, and a 45 KiB core); the rate-limited ones a
		// few KiB. 16 MiB holds only some of the 20 kept ones whole.
		maxUse = 16 << 20
	)
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": `package main

import "os"

func main() {
	var p *struct{ x int }
	if len(os.Args) > 5 {
		p = &struct{ x int }{}
	}
	println(p.x)
}
`}})
	dir := crashtest.PatternDir(t, "cst")
	spoolDir := filepath.Join(dir, "s")
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	settings := spool.Settings{MaxUse: maxUse, RateLimit: rateLimit, RateWindow: time.Hour}
	if err := settings.Save(spoolDir); err != nil {
		t.Fatal(err)
	}
	lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &lim); err != nil {
		t.Fatal(err)
	}
	// holdCorePattern holds the lock; this test puts the pattern back
	// itself, and holdCorePattern does if it could not.
	var kernel corepattern.Kernel
	prev, err := kernel.Read()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kernel.Write(prev) })
	if err := kernel.Write(corepattern.Settings{
		Pattern:   corepattern.Pattern(filepath.Join(binDir, "corepipe-collector"), spoolDir),
		PipeLimit: 64,
	}); err != nil {
		t.Fatal(err)
	}

	stopSampling := testkit.SamplePeak(spoolDir, 2*time.Millisecond)

	start := time.Now()
	pids := make(chan int, crashes)
	var failures atomic.Int64
	var wg sync.WaitGroup
	work := make(chan struct{}, crashes)
	for range crashes {
		work <- struct{}{}
	}
	close(work)
	for range parallel {
		wg.Go(func() {
			for range work {
				cmd := exec.Command(exe)
				cmd.Env = append(os.Environ(), "GOTRACEBACK=crash")
				err := cmd.Run()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGABRT || !ee.Sys().(syscall.WaitStatus).CoreDump() {
					failures.Add(1)
					continue
				}
				pids <- cmd.Process.Pid
			}
		})
	}
	wg.Wait()
	close(pids)
	storm := time.Since(start)
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d crashes did not die of SIGABRT with a core", n, crashes)
	}

	// With core_pipe_limit set the kernel reaps a crash only after its
	// collector exits, so the entries are committed by now; allow a moment
	// for a slow rename all the same.
	var entries []spool.Entry
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, err = spool.Spool{Dir: spoolDir}.Entries()
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) >= crashes || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	peak := stopSampling()

	byPID := map[int]*corepipe.Crash{}
	for _, e := range entries {
		c, err := e.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if byPID[c.Process.PID] != nil {
			t.Errorf("pid %d has two manifests", c.Process.PID)
		}
		byPID[c.Process.PID] = c
		switch c.Core.Dropped {
		case "":
			if e.CorePath() == "" || c.Core.Size == 0 {
				t.Errorf("crash %s kept a core of %d bytes at %q", c.ID, c.Core.Size, e.CorePath())
			}
		case spool.DroppedRateLimited:
			if e.CorePath() != "" || !hasNote(c, "rate limited") {
				t.Errorf("rate-limited crash %s: core %q, notes %q", c.ID, e.CorePath(), c.Notes)
			}
		case spool.DroppedSpoolFull:
			if e.CorePath() != "" || !hasNote(c, "spool full") {
				t.Errorf("spool-full crash %s: core %q, notes %q", c.ID, e.CorePath(), c.Notes)
			}
		default:
			t.Errorf("crash %s: core dropped as %q: %q", c.ID, c.Core.Dropped, c.Notes)
		}
	}
	kept, limited, full, spoolNotes := 0, 0, 0, 0
	for pid := range pids {
		c := byPID[pid]
		if c == nil {
			t.Errorf("crash of pid %d left no manifest", pid)
			continue
		}
		switch c.Core.Dropped {
		case "":
			kept++
		case spool.DroppedRateLimited:
			limited++
		case spool.DroppedSpoolFull:
			full++
		}
		if hasNote(c, "spool full") {
			spoolNotes++
		}
	}
	t.Logf("%d crashes in %v: %d kept, %d rate limited, %d spool full, %d with a spool-full note; spool peak %d of %d bytes",
		crashes, storm.Round(time.Millisecond), kept, limited, full, spoolNotes, peak, maxUse)
	// A crash that finds the spool full does not count against the rate
	// limit: the admitted ones are the kept ones and some of the full ones.
	if kept == 0 || kept > rateLimit || kept+full < rateLimit || kept+full+limited != crashes {
		t.Errorf("%d kept, %d spool full, %d rate limited; want %d admitted, the rest rate limited", kept, full, limited, rateLimit)
	}
	if spoolNotes == 0 {
		t.Error("no crash met the spool's max use: the limit was not exercised")
	}
	if peak > maxUse {
		t.Errorf("the spool held %d bytes during the storm, max use %d", peak, maxUse)
	}
	if len(entries) != crashes {
		log, _ := os.ReadFile(filepath.Join(spoolDir, spool.LogFile))
		t.Errorf("%d entries for %d crashes; collector.log:\n%s", len(entries), crashes, tail(string(log), 20))
	}
}

func hasNote(c *corepipe.Crash, substr string) bool {
	for _, n := range c.Notes {
		if strings.Contains(n, substr) {
			return true
		}
	}
	return false
}
