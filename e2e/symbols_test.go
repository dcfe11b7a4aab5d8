package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/symbols"
)

// TestStrippedCrashThenUpload follows the README's recipe on a real
// pipeline: a production-style binary (objcopy --strip-all) crashes and
// gets a degraded report that says which symbols it lacks; once the debug
// file split from the same build is uploaded with `corepipe symbols
// upload`, that crash is analysed again by itself and gets a new report
// (same ID, revision 1) that matches the runtime goroutine for goroutine;
// so does `corepipe reanalyze --build-id` (revision 2), and the next
// crash's report. A -s -w build is warned about and refused.
func TestStrippedCrashThenUpload(t *testing.T) {
	holdCorePattern(t)
	_, api := startDev(t, nil)
	prog := crashProgram{name: "nilderef"}
	exe := prog.build(t)
	shipped := filepath.Join(t.TempDir(), "crasher")
	debug := crashtest.SplitDebug(t, exe, shipped)
	ids := crashtest.BuildIDs(t, shipped)
	if ids.GNU == "" {
		t.Fatal("shipped binary has no GNU build ID")
	}
	cli := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(binDir, "corepipe"), args...).CombinedOutput()
		return string(out), err
	}

	first := crashtest.Run(t, time.Minute, shipped, nil)
	res := first
	r := waitReport(t, api, res.PID, 2*time.Minute)
	degraded := r.ID
	if want := "symbols missing: gnu:" + ids.GNU; !slices.Contains(r.Lacks, want) {
		t.Errorf("report of the stripped binary lacks %q, want %q", r.Lacks, want)
	}
	if len(r.Goroutines) > 0 || len(r.Threads) == 0 {
		t.Errorf("report without symbols: %d goroutines, %d threads; want thread stacks only", len(r.Goroutines), len(r.Threads))
	}
	if out, err := cli("symbols", "check", "--server", api, shipped); err == nil || !strings.Contains(out, "NOT symbolised") {
		t.Errorf("symbols check before the upload: %v\n%s", err, out)
	}

	uploaded := time.Now()
	if out, err := cli("symbols", "upload", "--server", api, debug); err != nil || !strings.Contains(out, "uploaded gnu:"+ids.GNU) ||
		!strings.Contains(out, "1 kept crashes of this build queued for re-analysis, 0 skipped") {
		t.Fatalf("symbols upload: %v\n%s", err, out)
	}
	if out, err := cli("symbols", "upload", "--server", api, debug); err != nil || !strings.Contains(out, "already stored") {
		t.Errorf("symbols upload again: %v\n%s", err, out)
	}
	if out, err := cli("symbols", "check", "--server", api, shipped); err != nil || !strings.Contains(out, "fully symbolised") {
		t.Errorf("symbols check after the upload: %v\n%s", err, out)
	}
	if out, err := cli("symbols", "ls", "--server", api); err != nil || !strings.Contains(out, ids.GNU) {
		t.Errorf("symbols ls: %v\n%s", err, out)
	}

	// The upload had the build's kept crash analysed again by itself.
	r = waitReportWhere(t, api, 2*time.Minute, func(r *corepipe.Report) bool { return r.ID == degraded && r.Revision == 1 })
	t.Logf("upload to full report: %v", time.Since(uploaded).Round(time.Millisecond))
	if len(r.Lacks) > 0 {
		t.Errorf("report re-analysed after the upload still lacks %q", r.Lacks)
	}
	checkReport(t, api, prog, r, first)

	out, err := cli("reanalyze", "--server", api, "--build-id", "gnu:"+ids.GNU)
	if err != nil || !strings.Contains(out, "queued "+degraded+" (revision 2)") || !strings.Contains(out, "1 crashes: 1 queued for re-analysis, 0 skipped") {
		t.Fatalf("reanalyze --build-id: %v\n%s", err, out)
	}
	r = waitReportWhere(t, api, 2*time.Minute, func(r *corepipe.Report) bool { return r.ID == degraded && r.Revision == 2 })
	if len(r.Lacks) > 0 {
		t.Errorf("re-analysed report still lacks %q", r.Lacks)
	}
	checkReport(t, api, prog, r, first)
	if out, err := cli("reanalyze", "--server", api, "--build-id", "gnu:"+strings.Repeat("0", 40)); err != nil || !strings.Contains(out, "no indexed crash matches") {
		t.Errorf("reanalyze of a build without crashes: %v\n%s", err, out)
	}

	res = crashtest.Run(t, time.Minute, shipped, nil)
	r = waitReport(t, api, res.PID, 2*time.Minute)
	if len(r.Lacks) > 0 {
		t.Errorf("report after the upload still lacks %q", r.Lacks)
	}
	checkReport(t, api, prog, r, res)

	sw := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": "package main\n\nfunc main() {}\n"}, Flags: []string{"-ldflags=-s -w"}})
	out, err = cli("symbols", "upload", "--server", api, sw)
	if err == nil || !strings.Contains(out, "warning: "+sw+" was built with -ldflags=-s or -w") || !strings.Contains(out, "no DWARF") {
		t.Errorf("symbols upload of a -s -w build: %v\n%s", err, out)
	}
}

// TestShipStrippedScript runs scripts/ship-stripped.sh, the README's recipe
// for a service's build, against a running `corepipe dev`: the script
// builds, uploads the debug info, strips and checks; the shipped binary has
// no DWARF, and its crash's first report is complete.
func TestShipStrippedScript(t *testing.T) {
	holdCorePattern(t)
	_, api := startDev(t, nil)
	prog := crashProgram{name: "nilderef"}
	mod := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", prog.name, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"go.mod": "module example.com/crasher\n\ngo 1.24\n", "main.go": string(src)} {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script, err := filepath.Abs("../scripts/ship-stripped.sh")
	if err != nil {
		t.Fatal(err)
	}
	shipped := filepath.Join(t.TempDir(), "bin", "crasher")
	cmd := exec.Command(script, "-o", shipped, ".", "-trimpath")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "COREPIPE_SERVER="+api, "COREPIPE="+filepath.Join(binDir, "corepipe"), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "fully symbolised") {
		t.Fatalf("ship-stripped.sh: %v\n%s", err, out)
	}
	if ok, err := symbols.HasDWARF(shipped); ok || err != nil {
		t.Fatalf("the shipped binary has DWARF (%v): it was not stripped", err)
	}
	if ok, err := symbols.HasDWARF(shipped + ".debug"); !ok || err != nil {
		t.Errorf("the debug file kept beside it has no DWARF: %v", err)
	}

	res := crashtest.Run(t, time.Minute, shipped, nil)
	r := waitReport(t, api, res.PID, 2*time.Minute)
	if len(r.Lacks) > 0 {
		t.Errorf("report of the shipped binary lacks %q", r.Lacks)
	}
	checkReport(t, api, prog, r, res)

	cmd = exec.Command(script, "-o", filepath.Join(t.TempDir(), "x"), ".")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "COREPIPE_SERVER=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "COREPIPE_SERVER is not set") {
		t.Errorf("without a server: %v\n%s", err, out)
	}
}
