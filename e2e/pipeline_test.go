// Package e2e crashes real programs under the real kernel and checks the
// reports that come out of the whole pipeline against what the Go runtime
// itself printed. The tests need root (they own core_pattern while they run)
// and skip with a message otherwise.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
	"github.com/corepipe/corepipe/internal/testkit/miniotest"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
)

var programs = []crashProgram{{name: "nilderef"}, {name: "custompanic"}, {name: "cgosegv", cgo: true}}

// TestDev runs `corepipe dev --install-handler`, the README's run command.
func TestDev(t *testing.T) {
	holdCorePattern(t)
	dev, api := startDev(t, nil)
	crashAll(t, api)

	dev.stop(t)
	if s, err := os.ReadFile("/proc/sys/kernel/core_pattern"); err != nil || strings.Contains(string(s), "corepipe-collector") {
		t.Errorf("core_pattern after SIGTERM to corepipe dev: %q, %v", s, err)
	}
}

// TestDistributed runs the production topology: agent, analyzer and api as
// separate processes, an S3 blob store on a real MinIO server and a separate
// NATS JetStream server.
func TestDistributed(t *testing.T) {
	holdCorePattern(t)
	minio := miniotest.Start(t)
	nats := natstest.StartExternal(t)
	dir := crashtest.PatternDir(t, "cps")

	env := minio.Env()
	blob := minio.URL("corepipe-e2e")
	start(t, env, "agent", "--spool", filepath.Join(dir, "spool"), "--blob", blob, "--nats", nats.URL(),
		"--install-handler", "--collector", filepath.Join(binDir, "corepipe-collector"))
	start(t, env, "analyzer", "--blob", blob, "--nats", nats.URL())
	api := start(t, env, "api", "--blob", blob, "--nats", nats.URL(), "--listen", "127.0.0.1:0",
		"--db", filepath.Join(dir, "index.db")).waitURL(t)
	waitHandler(t)
	crashAll(t, api)
}

// crashAll crashes every program, waits for each report and checks it.
func crashAll(t *testing.T, api string) {
	for _, prog := range programs {
		t.Run(prog.name, func(t *testing.T) {
			exe := prog.build(t)
			res := crashtest.Run(t, time.Minute, exe, nil)
			crashed := time.Now()
			r := waitReport(t, api, res.PID, 2*time.Minute)
			t.Logf("%s: crash to report in %v (capture %dms, upload %dms, analysis %dms)", prog.name,
				time.Since(crashed).Round(time.Millisecond), r.Timings.CaptureMS, r.Timings.UploadMS, r.Timings.AnalysisMS)
			checkReport(t, api, prog, r, res)
		})
	}
}

func checkReport(t *testing.T, api string, prog crashProgram, r *corepipe.Report, res crashtest.Result) {
	t.Helper()
	if r.Status != corepipe.StatusAnalyzed {
		t.Fatalf("status %q, error %q", r.Status, r.Error)
	}
	if r.Signal == nil || r.Signal.Name != "SIGABRT" {
		t.Errorf("signal %+v, want SIGABRT: GOTRACEBACK=crash re-raises", r.Signal)
	}
	dump, err := gotraceback.Parse(res.Stderr)
	if err != nil {
		t.Fatalf("parse the runtime's own traceback: %v\n%s", err, res.Stderr)
	}
	for _, m := range gotraceback.Compare(r, dump) {
		t.Errorf("report differs from the runtime's traceback: %s", m)
	}
	if t.Failed() {
		t.Logf("runtime stderr:\n%s", tail(res.Stderr, 80))
	}

	g := r.CrashingGoroutineReport()
	if g == nil {
		t.Fatalf("no crashing goroutine %d among %d goroutines", r.CrashingGoroutine, len(r.Goroutines))
	}
	if r.Goroutines[0].ID != r.CrashingGoroutine {
		t.Errorf("goroutine %d listed first, want the crashing one %d", r.Goroutines[0].ID, r.CrashingGoroutine)
	}
	var user []string
	for _, f := range g.Frames {
		if strings.HasPrefix(f.Function, "main.") {
			user = append(user, f.Function)
		}
	}
	switch prog.name {
	case "nilderef":
		want := []string{"main.(*server).retries", "main.handle", "main.serve", "main.main"}
		if !slices.Equal(user, want) {
			t.Errorf("crashing goroutine's frames in main: %v, want %v", user, want)
		}
		if r.Fault == nil || r.Fault.Address != "0x0" || r.Fault.Name != "SIGSEGV" {
			t.Errorf("fault %+v, want SIGSEGV at 0x0", r.Fault)
		}
		if r.Panic == nil || r.Panic.Message != "runtime error: invalid memory address or nil pointer dereference" {
			t.Errorf("panic %+v", r.Panic)
		}
		if len(r.Goroutines) < 7 {
			t.Errorf("%d goroutines, want the 6 parked ones and main", len(r.Goroutines))
		}
	case "custompanic":
		if r.Panic == nil || r.Panic.Kind != corepipe.PanicKindPanic || r.Panic.Message != "custom failure: order 42 not found" {
			t.Errorf("panic %+v", r.Panic)
		}
		if len(user) < 3 || user[0] != "main.lookup" || user[1] != "main.process" {
			t.Errorf("crashing goroutine's frames in main: %v", user)
		}
	case "cgosegv":
		if r.Fault == nil || r.Fault.Name != "SIGSEGV" || r.Fault.Address != "0x0" {
			t.Errorf("fault %+v, want SIGSEGV at 0x0 in C", r.Fault)
		}
		if !slices.Contains(user, "main.callC") {
			t.Errorf("the Go frames that called into C are missing: %v", user)
		}
	}
	if r.Artifacts.Core.Size == 0 || r.Artifacts.Core.Key == "" || r.Artifacts.Executable.Key == "" {
		t.Errorf("artifacts %+v", r.Artifacts)
	}

	code, core := get(t, fmt.Sprintf("%s/api/v1/crashes/%s/core", api, r.ID))
	if code != 200 || !bytes.HasPrefix(core, []byte("\x7fELF")) || int64(len(core)) != r.Artifacts.Core.Size {
		t.Errorf("core download: status %d, %d bytes, want an ELF core of %d bytes", code, len(core), r.Artifacts.Core.Size)
	}
	code, page := get(t, fmt.Sprintf("%s/crashes/%s", api, r.ID))
	if code != 200 || !bytes.Contains(page, []byte(htmlEscape(g.Frames[0].Function))) {
		t.Errorf("crash page: status %d, lacks the crashing goroutine's top frame %s", code, g.Frames[0].Function)
	}
	code, list := get(t, api+"/")
	if code != 200 || !bytes.Contains(list, []byte(r.ID)) {
		t.Errorf("crash list page: status %d, lacks crash %s", code, r.ID)
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}
