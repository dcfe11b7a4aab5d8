package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit"
)

// run starts a.Run and returns its stop.
func run(t *testing.T, a *Agent) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.Run(ctx); err != nil {
			t.Error(err)
		}
	})
	return func() { cancel(); wg.Wait() }
}

// TestRunWakesOnCommit commits an entry the way the collector does, by
// renaming it into place, to an agent whose poll never comes: only the
// inotify watch can make it ship.
func TestRunWakesOnCommit(t *testing.T) {
	r := newRig(t, nil)
	r.agent = New(Config{Spool: r.spool, Blobs: r.blobs, Queue: r.queue, Poll: time.Hour})
	stop := run(t, r.agent)
	defer stop()
	// The first pass, at start, finds nothing; give it time to be done.
	time.Sleep(50 * time.Millisecond)

	c := newCrash(11)
	tmp := filepath.Join(t.TempDir(), "staging")
	writeEntry(t, tmp, c, []byte("core"), nil)
	if err := os.Rename(filepath.Join(tmp, c.ID), filepath.Join(r.spool.Dir, c.ID)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "entry shipped after its commit", func() bool {
		entries, _ := r.spool.Entries()
		return len(entries) == 0
	})
	stop()
	if ids := r.queued(t); len(ids) != 1 || ids[0] != c.ID {
		t.Errorf("queued %v, want %s", ids, c.ID)
	}
}

func TestMetrics(t *testing.T) {
	failing := downStore(t)
	r := newRig(t, failing)
	reg := prometheus.NewPedanticRegistry()
	r.agent = New(Config{Spool: r.spool, Blobs: failing, Queue: r.queue, Registerer: reg})

	kept, limited, full := newCrash(1), newCrash(2), newCrash(3)
	kept.Core.Truncated = true
	limited.Core.Dropped = spool.DroppedRateLimited
	full.Core.Dropped = spool.DroppedSpoolFull
	kept.CapturedAt = time.Now().Add(-time.Hour)
	kept.ID = corepipe.NewID(kept.CapturedAt)
	writeEntry(t, r.spool.Dir, kept, []byte("core bytes"), []byte("exe"))
	writeEntry(t, r.spool.Dir, limited, nil, nil)
	writeEntry(t, r.spool.Dir, full, nil, nil)

	// Storage down: seen, counted, waiting, retried.
	for range 2 {
		if _, err := r.agent.ShipAll(context.Background()); err == nil {
			t.Fatal("shipped with storage down")
		}
	}
	check := func(name string, want float64, c prometheus.Metric) {
		t.Helper()
		if got := value(c); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("captured", 3, r.agent.m.captured)
	check("dropped rate_limited", 1, r.agent.m.dropped.WithLabelValues(spool.DroppedRateLimited))
	check("dropped spool_full", 1, r.agent.m.dropped.WithLabelValues(spool.DroppedSpoolFull))
	check("truncated", 1, r.agent.m.truncated)
	check("retries", 2, r.agent.m.retries)
	check("waiting", 3, r.agent.m.waiting)
	if age := value(r.agent.m.oldest); age < 3500 || age > 7200 {
		t.Errorf("oldest waiting = %vs, want about an hour", age)
	}
	if n := value(r.agent.m.spoolBytes); n < float64(len("core bytes")+len("exe")) {
		t.Errorf("spool bytes = %v", n)
	}

	failing.down = false
	if n, err := r.agent.ShipAll(context.Background()); err != nil || n != 3 {
		t.Fatalf("ShipAll = %d, %v", n, err)
	}
	r.agent.ShipAll(context.Background())
	check("captured after shipping", 3, r.agent.m.captured)
	check("uploaded", 3, r.agent.m.uploaded)
	check("bytes", float64(len("core bytes")+len("exe")), r.agent.m.bytes)
	check("waiting after shipping", 0, r.agent.m.waiting)
	check("oldest after shipping", 0, r.agent.m.oldest)

	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	if len(families) != 15 {
		t.Errorf("registry holds %d metrics, want the agent's 15", len(families))
	}
}

// TestWatcherClose checks that closing the watch ends its reader at once,
// with no event to wake it.
func TestWatcherClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	w, err := watchSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := watchSpool(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("watching a missing spool did not fail")
	}
}

// TestGuardReinstalls overwrites core_pattern under a running agent, as a
// sysctl run or a package upgrade would, and checks the agent puts the
// handler back, counts it, and that the overwriting value is what a stop
// would restore.
func TestGuardReinstalls(t *testing.T) {
	sys := t.TempDir()
	write := func(name, v string) {
		if err := os.WriteFile(filepath.Join(sys, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("core_pattern", "core")
	write("core_pipe_limit", "0")
	// Started with --force: another handler's pattern is replaced too.
	h := corepattern.Handler{Kernel: corepattern.Kernel{SysDir: sys}, StateFile: filepath.Join(t.TempDir(), "state"), Force: true}
	want := corepattern.Settings{Pattern: corepattern.Pattern("/opt/corepipe-collector", "/var/spool"), PipeLimit: 64}
	if err := h.Install(want); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, nil)
	r.agent = New(Config{Spool: r.spool, Blobs: r.blobs, Queue: r.queue, Registerer: prometheus.NewRegistry(),
		Guard: &Guard{Handler: h, Want: want, Every: 10 * time.Millisecond}})
	stop := run(t, r.agent)
	defer stop()

	write("core_pattern", "/var/crash/core.%p")
	testkit.WaitFor(t, "handler re-installed", func() bool {
		s, err := h.Kernel.Read()
		return err == nil && s == want
	})
	stop()
	if n := value(r.agent.m.reinstalls); n != 1 {
		t.Errorf("reinstalls = %v, want 1", n)
	}
	if err := h.Restore(); err != nil {
		t.Fatal(err)
	}
	if s, _ := h.Kernel.Read(); s.Pattern != "/var/crash/core.%p" {
		t.Errorf("restored %q, want the pattern that overwrote ours", s.Pattern)
	}
}

// A foreign handler is left alone without Force, and said so.
func TestGuardRespectsForeignHandler(t *testing.T) {
	sys := t.TempDir()
	os.WriteFile(filepath.Join(sys, "core_pattern"), []byte("core\n"), 0o644)
	os.WriteFile(filepath.Join(sys, "core_pipe_limit"), []byte("0\n"), 0o644)
	h := corepattern.Handler{Kernel: corepattern.Kernel{SysDir: sys}, StateFile: filepath.Join(t.TempDir(), "state")}
	want := corepattern.Settings{Pattern: corepattern.Pattern("/opt/corepipe-collector", "/s"), PipeLimit: 64}
	if err := h.Install(want); err != nil {
		t.Fatal(err)
	}
	foreign := "|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h"
	os.WriteFile(filepath.Join(sys, "core_pattern"), []byte(foreign+"\n"), 0o644)
	var logs strings.Builder
	a := New(Config{Logger: newTextLogger(&logs)})
	a.check(&Guard{Handler: h, Want: want})
	if s, _ := h.Kernel.Read(); s.Pattern != foreign {
		t.Errorf("core_pattern = %q, want the foreign handler kept", s.Pattern)
	}
	if !strings.Contains(logs.String(), "another handler") || value(a.m.reinstalls) != 0 {
		t.Errorf("log %q", logs.String())
	}
}

func TestBackoff(t *testing.T) {
	var d time.Duration
	var seq []time.Duration
	for range 8 {
		d = nextBackoff(d, 20*time.Second)
		seq = append(seq, d)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 20, 20, 20}
	for i := range want {
		if seq[i] != want[i]*time.Second {
			t.Fatalf("backoff sequence %v, want %v seconds", seq, want)
		}
	}
	seen := map[time.Duration]bool{}
	for range 1000 {
		j := jitter(8 * time.Second)
		if j < 4*time.Second || j > 8*time.Second {
			t.Fatalf("jitter(8s) = %v, outside [4s, 8s]", j)
		}
		seen[j] = true
	}
	if len(seen) < 100 {
		t.Errorf("jitter took only %d values in 1000 draws", len(seen))
	}
}

func newTextLogger(w *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
