package analyzer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// misbehave is a stand-in for `corepipe analyze` that fails the way an
// analysis can: its first argument says how.
const misbehave = `package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

var keep [][]byte

// first holds the limits as they were before any of this program's own
// code ran: package variables are initialised first.
var first = limits()

func limits() string {
	var out []string
	for _, l := range []struct {
		name string
		res  int
	}{{"as", syscall.RLIMIT_AS}, {"cpu", syscall.RLIMIT_CPU}, {"fsize", syscall.RLIMIT_FSIZE}, {"core", syscall.RLIMIT_CORE}} {
		var r syscall.Rlimit
		syscall.Getrlimit(l.res, &r)
		out = append(out, fmt.Sprintf("%s=%d", l.name, r.Cur))
	}
	return strings.Join(out, " ")
}

func main() {
	switch os.Args[1] {
	case "limits":
		fmt.Print(first)
	case "env":
		fmt.Print(strings.Join(os.Environ(), "\n"))
	case "bigreport":
		// Write a report without end, as analyze would print one, and
		// fail the way analyze fails when the write does.
		b := make([]byte, 1<<20)
		for {
			if _, err := os.Stdout.Write(b); err != nil {
				fmt.Fprintln(os.Stderr, "corepipe: write report:", err)
				os.Exit(1)
			}
		}
	case "panic":
		var m map[string]int
		m["delve"]++
	case "hang":
		time.Sleep(time.Hour)
	case "oom":
		for {
			b := make([]byte, 64<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
	case "spin":
		for n := 0; ; n++ {
			if n < 0 {
				fmt.Println(n)
			}
		}
	case "report":
		// Copy a report file to stdout, as analyze prints its report.
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			panic(err)
		}
		os.Stdout.Write(b)
	}
}
`

func buildMisbehave(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(misbehave), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module misbehave\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "misbehave")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return exe
}

// scratchCore is where the analyzer would have put the core: the child's
// manifest goes next to it.
func scratchCore(t *testing.T) string {
	core := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(core, []byte("core"), 0o600); err != nil {
		t.Fatal(err)
	}
	return core
}

// newReportFile is a file for the child's report.
func newReportFile(t *testing.T) *os.File {
	f, err := os.CreateTemp(t.TempDir(), "report-*.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// reportJSON writes rep to a file, as a child that made it would, and
// returns the file's name.
func reportJSON(t *testing.T, rep *corepipe.Report) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "report.json")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := rep.WriteJSON(f, true); err != nil {
		t.Fatal(err)
	}
	return name
}

func contents(t *testing.T, f *os.File) string {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestChildFailures runs real child processes that panic, hang, run out of
// memory, CPU time and room for their report: each must become a one-line
// ErrInvalid that says what happened, and leave nothing behind in the
// scratch directory.
func TestChildFailures(t *testing.T) {
	t.Parallel()
	bin := buildMisbehave(t)
	for _, tc := range []struct {
		name  string
		child Child
		want  string
	}{
		{"panic", Child{Command: []string{bin, "panic"}}, "analysis crashed: panic: assignment to entry in nil map"},
		{"hang", Child{Command: []string{bin, "hang"}, Timeout: 300 * time.Millisecond}, "analysis took longer than 300ms"},
		{"out of memory", Child{Command: []string{bin, "oom"}, MaxMemory: 512 << 20}, "analysis ran out of memory (limit 512 MiB): "},
		{"out of CPU time", Child{Command: []string{bin, "spin"}, MaxCPU: time.Second}, "analysis used more than its CPU time limit of 1s"},
		{"report too large", Child{Command: []string{bin, "bigreport"}, MaxReport: 8 << 20}, "analysis wrote a report over its limit of 8 MiB"},
		{"report too large, not Go", Child{Command: []string{"sh", "-c", "exec head -c 100000000 /dev/zero"}, MaxReport: 8 << 20},
			"analysis wrote a report over its limit of 8 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			core := scratchCore(t)
			report := newReportFile(t)
			crash := &corepipe.Crash{ID: corepipe.NewID(time.Now())}
			err := tc.child.Inspect(context.Background(), crash, core, "exe", report)
			if !errors.Is(err, corepipe.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Inspect = %v; want an ErrInvalid saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if st, _ := report.Stat(); tc.child.MaxReport > 0 && uint64(st.Size()) > tc.child.MaxReport {
				t.Errorf("report grew to %d bytes past its limit of %d", st.Size(), tc.child.MaxReport)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(core), "crash.json")); len(left) > 0 {
				t.Errorf("manifest left behind: %v", left)
			}
			t.Log(err)
		})
	}
}

// The limits hold from the child's first instruction, not from whenever the
// analyzer got round to setting them, and the child never dumps a core.
func TestChildLimitsHoldFromTheStart(t *testing.T) {
	t.Parallel()
	bin := buildMisbehave(t)
	report := newReportFile(t)
	c := Child{Command: []string{bin, "limits"}, MaxMemory: 3 << 30, MaxCPU: 7 * time.Second, MaxReport: 5 << 20}
	if err := c.Inspect(context.Background(), nil, scratchCore(t), "exe", report); err != nil {
		t.Fatal(err)
	}
	if got, want := contents(t, report), fmt.Sprintf("as=%d cpu=7 fsize=%d core=1", 3<<30, 5<<20); got != want {
		t.Errorf("the child started with limits %q, want %q", got, want)
	}
}

// The child reads a hostile core: it must not also hold the analyzer's
// credentials for the blob store and the queue.
func TestChildEnvironmentIsScrubbed(t *testing.T) {
	bin := buildMisbehave(t)
	secrets := map[string]string{
		"AWS_SECRET_ACCESS_KEY": "aws-secret-1", "AWS_ACCESS_KEY_ID": "aws-id-2", "AWS_SESSION_TOKEN": "aws-token-3",
		"MINIO_ROOT_PASSWORD": "minio-secret-4", "NATS_PASSWORD": "nats-secret-5", "NATS_CREDS": "/creds-6",
		"COREPIPE_BLOB": "s3://bucket/?secret-7", "COREPIPE_NATS": "nats://u:secret-8@127.0.0.1:4222",
		"COREPIPE_SLACK_TOKEN": "xoxb-secret-9",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("GOTRACEBACK", "crash")
	t.Setenv("DEBUGINFOD_URLS", "http://127.0.0.1:8002")
	report := newReportFile(t)
	if err := (Child{Command: []string{bin, "env"}}).Inspect(context.Background(), nil, scratchCore(t), "exe", report); err != nil {
		t.Fatal(err)
	}
	env := contents(t, report)
	for k, v := range secrets {
		if strings.Contains(env, k) || strings.Contains(env, v) {
			t.Errorf("the child sees %s", k)
		}
	}
	if strings.Contains(env, limitsEnv) {
		t.Errorf("the trampoline's own variable reached the child")
	}
	// The analyzer asks debuginfod servers itself, within its bounds: the
	// child, which reads hostile cores, stays off the network.
	if strings.Contains(env, "DEBUGINFOD_URLS") {
		t.Errorf("the child sees DEBUGINFOD_URLS")
	}
	for _, want := range []string{"PATH=" + os.Getenv("PATH"), "GOTRACEBACK=system"} {
		if !strings.Contains("\n"+env+"\n", "\n"+want+"\n") {
			t.Errorf("the child's environment lacks %s:\n%s", want, env)
		}
	}
}

// TestChildReportIsStoredWhole: the report the child writes reaches the
// store whole, goroutines included, with the manifest's own fields.
func TestChildReportIsStoredWhole(t *testing.T) {
	bin := buildMisbehave(t)
	want := &corepipe.Report{Schema: corepipe.ReportSchema, Status: corepipe.StatusAnalyzed, Title: "panic: x in main.f",
		CrashingGoroutine: 1, Threads: []corepipe.Thread{{ID: 1, PC: "0x1"}},
		Process: corepipe.Process{PID: 666, Exe: "/forged"}}
	for i := range 1000 {
		want.Goroutines = append(want.Goroutines, corepipe.Goroutine{ID: int64(i + 1), Status: "chan receive",
			Frames: []corepipe.Frame{{Function: "main.f", File: "/src/main.go", Line: 7, PC: "0x401000"}}})
	}
	file := reportJSON(t, want)

	r := newRig(t)
	c := r.stored(t, []byte("core"))
	got := r.analyse(t, c, Child{Command: []string{bin, "report", file}})
	if got.Status != corepipe.StatusAnalyzed || got.Title != want.Title || len(got.Goroutines) != 1000 || len(got.Threads) != 1 || got.Goroutines[999].ID != 1000 {
		t.Fatalf("stored %d goroutines, title %q, status %q, error %q", len(got.Goroutines), got.Title, got.Status, got.Error)
	}
	if !reflect.DeepEqual(got.Goroutines, want.Goroutines) {
		t.Errorf("the goroutines changed on their way to the store")
	}
	if got.Process.PID != 99 || got.Process.Exe != "/bin/app" {
		t.Errorf("stored process %+v: the manifest's, not the child's, must win", got.Process)
	}
}

// TestHandleChildCrashThenGoesOn: a child that crashes gives its crash a
// failed report, acked; the same worker then analyses the next crash.
func TestHandleChildCrashThenGoesOn(t *testing.T) {
	bin := buildMisbehave(t)
	r := newRig(t)
	ctx := context.Background()

	first := r.stored(t, []byte("core one"))
	a := New(Config{Blobs: r.blobs, Queue: r.queue, TempDir: t.TempDir(),
		Inspector: Child{Command: []string{bin, "panic"}}})
	a.Handle(ctx, r.next(t))
	rep := r.report(t, first.ID)
	if rep.Status != corepipe.StatusFailed || !strings.Contains(rep.Error, "analysis crashed: panic: assignment to entry in nil map") {
		t.Errorf("report of the crashed analysis: status %q, error %q", rep.Status, rep.Error)
	}
	if r.pending(t) {
		t.Fatal("the crash whose analysis crashed is still queued")
	}

	good := reportJSON(t, &corepipe.Report{Schema: corepipe.ReportSchema, Status: corepipe.StatusAnalyzed, Title: "fine"})
	second := r.stored(t, []byte("core two"))
	a.cfg.Inspector = Child{Command: []string{bin, "report", good}}
	a.Handle(ctx, r.next(t))
	if rep := r.report(t, second.ID); rep.Status != corepipe.StatusAnalyzed || rep.Title != "fine" {
		t.Errorf("next crash: status %q, title %q, error %q", rep.Status, rep.Title, rep.Error)
	}
}

// Under a tight address-space limit the Go runtime can die reserving its
// arenas, before any goroutine exists: that is running out of memory too.
func TestChildErrorRuntimeReserveFailure(t *testing.T) {
	stderr := "fatal error: failed to reserve page summary memory\n\nruntime stack:\nruntime.throw({0x494d6b?, 0x20000000?})\n\t/usr/local/go/src/runtime/panic.go:1229 +0x48\n"
	if got := outOfMemory(stderr); got != "fatal error: failed to reserve page summary memory" {
		t.Errorf("outOfMemory = %q", got)
	}
	if got := runtimeCrash("fatal error: unexpected signal\n\nruntime stack:\nruntime.throw()\n"); got != "fatal error: unexpected signal" {
		t.Errorf("runtimeCrash of a crash with only a runtime stack = %q", got)
	}
}

// A crashing child dumps no core, even to a core_pattern pipe (which the
// kernel feeds whatever RLIMIT_CORE says, short of its marker 1), and
// cannot raise the limit itself: its core would hold the hostile core's
// bytes and come back through the pipeline.
func TestChildNeverDumpsCore(t *testing.T) {
	crashtest.RequireRoot(t)
	dir := t.TempDir()
	catcher := filepath.Join(dir, "catcher")
	if err := os.WriteFile(catcher, []byte("#!/bin/sh\ncat > \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	child := Child{Command: []string{"sh", "-c", "ulimit -c unlimited 2>/dev/null; kill -SEGV $$"}}
	// With a pipe limit the kernel waits for the catcher before the child
	// is reaped: a core, if any, is there when Inspect returns.
	crashtest.WithPattern(t, corepattern.Settings{Pattern: "|" + catcher + " " + dir + "/core.%p", PipeLimit: 1}, func() {
		err = child.Inspect(context.Background(), nil, "core", "exe", newReportFile(t))
	})
	if !errors.Is(err, corepipe.ErrInvalid) || !strings.Contains(err.Error(), "SIGSEGV") {
		t.Errorf("Inspect = %v, want the child's SIGSEGV", err)
	}
	if cores, _ := filepath.Glob(filepath.Join(dir, "core.*")); len(cores) > 0 {
		t.Errorf("the child dumped a core: %v", cores)
	}
}
