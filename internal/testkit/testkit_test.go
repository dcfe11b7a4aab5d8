package testkit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) { VerifyTestMain(m) }

func TestWaitFor(t *testing.T) {
	n := 0
	WaitFor(t, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("polled %d times, want 3", n)
	}
}

// fakeTB records a Fatalf instead of ending the goroutine of a real test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	panic(f)
}

func TestWaitForFailsAtTheDeadline(t *testing.T) {
	defer func(d time.Duration) { WaitDeadline = d }(WaitDeadline)
	WaitDeadline = 20 * time.Millisecond
	f := &fakeTB{TB: t}
	func() {
		defer func() { recover() }()
		WaitFor(f, "never", func() bool { return false })
	}()
	if !strings.Contains(f.failed, "waiting for never") {
		t.Errorf("WaitFor failed with %q", f.failed)
	}
}

func TestDeadlineFromEnv(t *testing.T) {
	for v, want := range map[string]time.Duration{"": time.Minute, "2m": 2 * time.Minute, "-1s": time.Minute, "x": time.Minute} {
		if got := deadlineFromEnv(v, time.Minute); got != want {
			t.Errorf("deadlineFromEnv(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := len(b.String()); got != 800 {
		t.Errorf("%d bytes, want 800", got)
	}
}

// fakeCheck records what ResourceCheck reports.
type fakeCheck struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (f *fakeCheck) Helper()                   {}
func (f *fakeCheck) Failed() bool              { return false }
func (f *fakeCheck) Cleanup(fn func())         { f.cleanups = append(f.cleanups, fn) }
func (f *fakeCheck) Errorf(s string, a ...any) { f.errs = append(f.errs, fmt.Sprintf(s, a...)) }

func TestResourceCheckFindsALeak(t *testing.T) {
	f := &fakeCheck{TB: t}
	ResourceCheck(f)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { <-stop; close(done) }()
	f.cleanups[0]()
	close(stop)
	<-done
	if len(f.errs) != 1 {
		t.Fatalf("ResourceCheck reported %q for a goroutine left running", f.errs)
	}

	f = &fakeCheck{TB: t}
	ResourceCheck(f)
	f.cleanups[0]()
	if len(f.errs) != 0 {
		t.Errorf("ResourceCheck reported %q with nothing left running", f.errs)
	}
}
