package analyzer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/corepipe/corepipe"
)

// TestNodeReportWithoutCore: a crash whose core the fleet's policy kept on
// its node arrives with the report the node made (by Local, through a real
// child) and no core. The analyzer stores that report as the crash's —
// analysed, with its goroutines and signature, saying where the core is —
// and does not fail it for the missing core.
func TestNodeReportWithoutCore(t *testing.T) {
	bin := buildMisbehave(t)
	made := &corepipe.Report{Schema: corepipe.ReportSchema, Status: corepipe.StatusAnalyzed, Title: "nil pointer dereference in main.f",
		Signature: "gocrash/v1:abcd", CrashingGoroutine: 1, Kind: corepipe.KindGo,
		Goroutines: []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{{Function: "main.f", File: "/src/main.go", Line: 7}}}}}
	file := reportJSON(t, made)

	// The spooled core, zstd as the collector writes it.
	spooled := filepath.Join(t.TempDir(), "core.zst")
	var z bytes.Buffer
	enc, _ := zstd.NewWriter(&z)
	enc.Write([]byte("\x7fELF a core"))
	enc.Close()
	if err := os.WriteFile(spooled, z.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	r := newRig(t)
	ctx := context.Background()
	now := time.Now()
	c := &corepipe.Crash{ID: corepipe.NewID(now), CapturedAt: now, Node: "n1",
		Process: corepipe.Process{PID: 99, Exe: "/bin/app"}, Signal: corepipe.Signal{Number: 6, Name: "SIGABRT"}}
	local := Local{Inspector: Child{Command: []string{bin, "report", file}, Nice: 10}, TempDir: t.TempDir()}
	sum, rf, err := local.Analyse(ctx, c, spooled, "exe")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Signature != made.Signature {
		t.Errorf("node analysis signature %q, want %q", sum.Signature, made.Signature)
	}
	st, _ := rf.Stat()
	c.NodeReport = corepipe.NodeReportKey(c)
	if err := r.blobs.Put(ctx, c.NodeReport, rf, st.Size()); err != nil {
		t.Fatal(err)
	}
	rf.Close()
	until := now.Add(time.Hour).UTC().Truncate(time.Second)
	c.Core.Location = &corepipe.CoreLocation{State: corepipe.CoreOnNode, Node: "n1", Until: until, Reason: "over the quota"}
	r.publish(t, c)

	got := r.analyse(t, c, Child{Command: []string{bin, "panic"}})
	if got.Status != corepipe.StatusAnalyzed || got.Signature != made.Signature || len(got.Goroutines) != 1 || got.Title != made.Title {
		t.Fatalf("stored status %q (error %q), signature %q, %d goroutines, title %q", got.Status, got.Error, got.Signature, len(got.Goroutines), got.Title)
	}
	loc := got.Artifacts.Core.Location
	if loc == nil || loc.State != corepipe.CoreOnNode || loc.Node != "n1" || !loc.Until.Equal(until) {
		t.Errorf("core location %+v, want on node n1 until %v", loc, until)
	}
	if r.pending(t) {
		t.Error("the crash is still queued")
	}
}

// TestDroppedReportSaysCoreLocation: every report says where its core is;
// one the collector dropped says never kept, and why.
func TestDroppedReportSaysCoreLocation(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	c := &corepipe.Crash{ID: corepipe.NewID(now), CapturedAt: now, Node: "n1",
		Process: corepipe.Process{PID: 7, Exe: "/bin/app"}, Core: corepipe.CoreArtifact{Dropped: "rate_limited"}}
	r.publish(t, c)
	got := r.analyse(t, c, nil)
	if l := got.Artifacts.Core.Location; got.Status != corepipe.StatusDropped || l == nil || l.State != corepipe.CoreNotKept || !strings.Contains(l.Reason, "rate_limited") {
		t.Errorf("status %q, core location %+v", got.Status, l)
	}
}

// The node's analysis yields the CPU to the node's workloads.
func TestChildNice(t *testing.T) {
	report := newReportFile(t)
	c := Child{Command: []string{"sh", "-c", `awk '{print $19}' /proc/$$/stat`}, Nice: 7}
	if err := c.Inspect(context.Background(), nil, scratchCore(t), "exe", report); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(contents(t, report)); got != "7" {
		t.Errorf("child's nice %q, want 7 (this test runs at nice 0)", got)
	}
}

// TestKeptUnanalysedIsNotAFailure: with --analyze-on-node=false a crash
// whose core stayed on its node arrives with neither core nor report: it
// is recorded, as a dropped one is, saying where its core is.
func TestKeptUnanalysedIsNotAFailure(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	c := &corepipe.Crash{ID: corepipe.NewID(now), CapturedAt: now, Node: "n1", Signal: corepipe.Signal{Number: 6, Name: "SIGABRT"},
		Process: corepipe.Process{PID: 7, Exe: "/bin/app"},
		Core:    corepipe.CoreArtifact{Location: &corepipe.CoreLocation{State: corepipe.CoreOnNode, Node: "n1", Until: now.Add(time.Hour), Reason: "over the quota"}}}
	r.publish(t, c)
	got := r.analyse(t, c, nil)
	if got.Status != corepipe.StatusDropped || !strings.Contains(got.Title, "core kept on node n1") || got.Artifacts.Core.Location.State != corepipe.CoreOnNode {
		t.Errorf("status %q, title %q, location %+v", got.Status, got.Title, got.Artifacts.Core.Location)
	}
}
