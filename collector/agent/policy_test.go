package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit/blobtest"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

func zstdOf(t *testing.T, b []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	enc, err := zstd.NewWriter(&z)
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(b)
	enc.Close()
	return z.Bytes()
}

// reportChild is an analysis child that reports signature sig, whatever
// the core: the agent's side of the node analysis, through a real child.
func reportChild(t *testing.T, sig string) analyzer.Local {
	t.Helper()
	file := filepath.Join(t.TempDir(), "report.json")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	r := &corepipe.Report{Schema: corepipe.ReportSchema, Status: corepipe.StatusAnalyzed, Signature: sig, Title: "nil pointer dereference in main.f",
		CrashingGoroutine: 1, Goroutines: []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{{Function: "main.f"}}}}}
	if err := r.WriteJSON(f, true); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return analyzer.Local{Inspector: analyzer.Child{Command: []string{"sh", "-c", "exec cat " + file}, Nice: 10}, TempDir: t.TempDir()}
}

// queuedCrashes drains the work queue and returns the crashes it held.
func (r *rig) queuedCrashes(t *testing.T) []corepipe.Crash {
	t.Helper()
	cons, err := r.queue.Crashes(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	var out []corepipe.Crash
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		msg, err := cons.Next(ctx)
		cancel()
		if err != nil {
			return out
		}
		var c corepipe.Crash
		if err := json.Unmarshal(msg.Data(), &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
		msg.Ack(context.Background())
	}
}

// TestPolicyShipsQuotaKeepsRest: ten crashes of one bug under a quota of
// two cores, on a real JetStream KV: two cores leave the node, eight stay
// in its spool, and all ten crashes are queued, the eight with the report
// the node made and where their core is. A kept core, requested, is
// stored and its crash queued again.
func TestPolicyShipsQuotaKeepsRest(t *testing.T) {
	r := newRig(t, nil)
	quota, err := r.queue.CoreQuota(2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r.agent = New(Config{Spool: r.spool, Blobs: r.blobs, Queue: r.queue, Policy: &CorePolicy{
		Quota: quota, Rule: "2 cores per signature and build per 1h", Analyser: reportChild(t, "gocrash/v1:feed"), TTL: time.Hour}})
	var crashes []*corepipe.Crash
	for i := range 10 {
		c := newCrash(100 + i)
		c.ID = corepipe.NewID(time.Now().Add(time.Duration(i) * time.Millisecond))
		writeEntry(t, r.spool.Dir, c, zstdOf(t, []byte("core")), []byte("\x7fELF executable"))
		crashes = append(crashes, c)
	}
	if n, err := r.agent.ShipAll(context.Background()); err != nil || n != 10 {
		t.Fatalf("ShipAll = %d, %v", n, err)
	}
	stored := 0
	for _, c := range crashes {
		if _, err := r.blobs.Stat(context.Background(), corepipe.CoreKey(c)); err == nil {
			stored++
		}
	}
	kept, _ := r.spool.Kept()
	if stored != 2 || len(kept) != 8 {
		t.Fatalf("%d cores stored and %d kept on the node, want 2 and 8", stored, len(kept))
	}
	queued := r.queuedCrashes(t)
	if len(queued) != 10 {
		t.Fatalf("%d crashes queued, want 10", len(queued))
	}
	var keptCrash corepipe.Crash
	for _, c := range queued {
		if c.Core.Key != "" {
			continue
		}
		l := c.Core.Location
		if c.NodeReport == "" || l == nil || l.State != corepipe.CoreOnNode || l.Node != "node-1" || !strings.Contains(l.Reason, "2 cores per signature") {
			t.Fatalf("crash %s queued without a core, with node report %q and location %+v", c.ID, c.NodeReport, l)
		}
		if _, err := r.blobs.Stat(context.Background(), c.NodeReport); err != nil {
			t.Errorf("node report of %s: %v", c.ID, err)
		}
		keptCrash = c
	}
	if entries, _ := r.spool.Entries(); len(entries) != 0 {
		t.Errorf("%d entries still to ship", len(entries))
	}

	if err := r.agent.UploadKept(context.Background(), keptCrash.ID); err != nil {
		t.Fatal(err)
	}
	if got := blobtest.Read(t, r.blobs, corepipe.CoreKey(&keptCrash)); !bytes.Equal(got, zstdOf(t, []byte("core"))) {
		t.Errorf("requested core stored as %q", got)
	}
	again := r.queuedCrashes(t)
	if len(again) != 1 || again[0].ID != keptCrash.ID || again[0].Core.Key == "" || again[0].Revision != 1 {
		t.Fatalf("after the request, queued %+v", again)
	}
	if _, ok := r.spool.KeptEntry(keptCrash.ID); ok {
		t.Error("the uploaded core is still kept on the node")
	}
	if err := r.agent.UploadKept(context.Background(), keptCrash.ID); err == nil {
		t.Error("a second upload of a core no longer on the node succeeded")
	}
}

// TestPolicyQuotaDownShipsCore: when the quota's NATS does not answer, the
// core is shipped (the documented degradation) and the crash is queued.
func TestPolicyQuotaDownShipsCore(t *testing.T) {
	r := newRig(t, nil)
	other := natstest.StartEmbedded(t)
	oq, err := natsq.Open(context.Background(), other.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer oq.Close(context.Background())
	quota, err := oq.CoreQuota(0+1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other.Shutdown()
	r.agent = New(Config{Spool: r.spool, Blobs: r.blobs, Queue: r.queue, Policy: &CorePolicy{
		Quota: quota, Analyser: reportChild(t, "gocrash/v1:feed"), AdmitTimeout: 300 * time.Millisecond}})
	c := newCrash(1)
	writeEntry(t, r.spool.Dir, c, zstdOf(t, []byte("core")), []byte("\x7fELF executable"))
	if n, err := r.agent.ShipAll(context.Background()); err != nil || n != 1 {
		t.Fatalf("ShipAll = %d, %v", n, err)
	}
	if _, err := r.blobs.Stat(context.Background(), corepipe.CoreKey(c)); err != nil {
		t.Errorf("core not shipped with the quota down: %v", err)
	}
	q := r.queuedCrashes(t)
	if len(q) != 1 || q[0].Core.Key == "" || !strings.Contains(strings.Join(q[0].Notes, "\n"), "quota did not answer") {
		t.Errorf("queued %+v", q)
	}
}

// TestPolicyWithoutNodeAnalysis: --analyze-on-node=false decides by build
// ID and signal, before any analysis; a kept core's crash is queued
// without a report, for the analyzer to record as kept on the node.
func TestPolicyWithoutNodeAnalysis(t *testing.T) {
	r := newRig(t, nil)
	quota, _ := r.queue.CoreQuota(1, time.Hour)
	r.agent = New(Config{Spool: r.spool, Blobs: r.blobs, Queue: r.queue, Policy: &CorePolicy{Quota: quota, Rule: "1 core per build and signal per 1h"}})
	a, b := newCrash(1), newCrash(2)
	b.ID = corepipe.NewID(time.Now().Add(time.Millisecond))
	writeEntry(t, r.spool.Dir, a, zstdOf(t, []byte("core")), []byte("\x7fELF executable"))
	writeEntry(t, r.spool.Dir, b, zstdOf(t, []byte("core")), nil)
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	q := r.queuedCrashes(t)
	if len(q) != 2 || q[0].Core.Key == "" || q[1].Core.Key != "" || q[1].NodeReport != "" || q[1].Core.Location == nil {
		t.Fatalf("queued %+v", q)
	}
}

// TestKeptCoresExpire: a kept core goes at its TTL; one beyond the share
// of max_use kept cores may take goes early, and its crash is queued again
// saying so.
func TestKeptCoresExpire(t *testing.T) {
	r := newRig(t, nil)
	quota, _ := r.queue.CoreQuota(1, time.Hour)
	r.agent = New(Config{Spool: r.spool, Blobs: r.blobs, Queue: r.queue, Policy: &CorePolicy{Quota: quota, Rule: "1", TTL: time.Hour}})
	var ids []string
	for i := range 3 {
		c := newCrash(i)
		c.ID = corepipe.NewID(time.Now().Add(time.Duration(i) * time.Millisecond))
		ids = append(ids, c.ID)
		writeEntry(t, r.spool.Dir, c, zstdOf(t, bytes.Repeat([]byte{byte(i)}, 1000)), []byte("\x7fELF executable"))
	}
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.queuedCrashes(t)
	if kept, _ := r.spool.Kept(); len(kept) != 2 {
		t.Fatalf("%d kept, want 2", len(kept))
	}
	r.agent.expireKept(context.Background(), time.Now())
	if kept, _ := r.spool.Kept(); len(kept) != 2 {
		t.Fatalf("%d kept before their time and without limits, want 2", len(kept))
	}
	// A max use the kept cores overrun: the oldest goes first.
	older, _ := r.spool.KeptEntry(ids[1])
	newer, _ := r.spool.KeptEntry(ids[2])
	if err := (spool.Settings{MaxUse: 2*max(older.Size(), newer.Size()) + 1}).Save(r.spool.Dir); err != nil {
		t.Fatal(err)
	}
	r.agent.expireKept(context.Background(), time.Now())
	if _, ok := r.spool.KeptEntry(ids[1]); ok {
		t.Error("the oldest kept core outlived the spool's limit")
	}
	if _, ok := r.spool.KeptEntry(ids[2]); !ok {
		t.Error("the newest kept core went too")
	}
	q := r.queuedCrashes(t)
	if len(q) != 1 || q[0].ID != ids[1] || q[0].Core.Location.State != corepipe.CoreExpired {
		t.Fatalf("after early removal, queued %+v", q)
	}
	r.agent.expireKept(context.Background(), time.Now().Add(2*time.Hour))
	if kept, _ := r.spool.Kept(); len(kept) != 0 {
		t.Errorf("%d kept past their TTL", len(kept))
	}
}

// TestPolicyDecisionSurvivesRestart: an agent that died after publishing a
// kept core's crash, before moving its entry among the kept ones, ships it
// again the same way on restart: no second analysis or quota count, the
// core still kept.
func TestPolicyDecisionSurvivesRestart(t *testing.T) {
	r := newRig(t, nil)
	quota, _ := r.queue.CoreQuota(1, time.Hour)
	r.agent = New(Config{Spool: r.spool, Blobs: r.blobs, Queue: r.queue, Policy: &CorePolicy{Quota: quota, Rule: "1", Analyser: reportChild(t, "gocrash/v1:feed")}})
	a, b := newCrash(1), newCrash(2)
	b.ID = corepipe.NewID(time.Now().Add(time.Millisecond))
	writeEntry(t, r.spool.Dir, a, zstdOf(t, []byte("core")), []byte("\x7fELF executable"))
	writeEntry(t, r.spool.Dir, b, zstdOf(t, []byte("core")), []byte("\x7fELF executable"))
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	// As if the agent had died between the publish and the keep.
	kept, ok := r.spool.KeptEntry(b.ID)
	if !ok {
		t.Fatal("b's core was not kept")
	}
	if err := os.Rename(kept.Dir, filepath.Join(r.spool.Dir, b.ID)); err != nil {
		t.Fatal(err)
	}
	restarted := New(Config{Spool: r.spool, Blobs: r.blobs, Queue: r.queue, Policy: r.agent.cfg.Policy})
	if _, err := restarted.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.spool.KeptEntry(b.ID); !ok {
		t.Error("b's core is no longer kept after the retry")
	}
	if _, err := r.blobs.Stat(context.Background(), corepipe.CoreKey(b)); err == nil {
		t.Error("the retry shipped b's core")
	}
	if n := value(restarted.m.decisions.WithLabelValues("kept")); n != 0 {
		t.Errorf("the retry decided again (%v kept decisions)", n)
	}
}

// countingQuota admits every core and counts the questions.
type countingQuota struct{ asked atomic.Int64 }

func (q *countingQuota) Admit(context.Context, string) (bool, error) {
	q.asked.Add(1)
	return true, nil
}

// failingPublisher refuses its first publish, as a queue without a leader
// does while the core upload already succeeded.
type failingPublisher struct {
	Publisher
	failed atomic.Bool
}

func (p *failingPublisher) PublishCrash(ctx context.Context, c *corepipe.Crash) error {
	if p.failed.CompareAndSwap(false, true) {
		return errors.New("nats: no response from stream")
	}
	return p.Publisher.PublishCrash(ctx, c)
}

// TestPolicyStoredCoreNotDecidedAgain: a core the quota admitted and the
// agent stored, whose crash then failed to publish, is published on the
// retry as stored — the quota is not asked again (found by e2e.TestFleet:
// a retry kept on the node a core already in the store, and counted twice).
func TestPolicyStoredCoreNotDecidedAgain(t *testing.T) {
	r := newRig(t, nil)
	quota := &countingQuota{}
	pub := &failingPublisher{Publisher: r.queue}
	r.agent = New(Config{Spool: r.spool, Blobs: r.blobs, Queue: pub, Policy: &CorePolicy{Quota: quota, Rule: "1"}})
	c := newCrash(1)
	writeEntry(t, r.spool.Dir, c, zstdOf(t, []byte("core")), []byte("\x7fELF executable"))
	if _, err := r.agent.ShipAll(context.Background()); err == nil {
		t.Fatal("the first attempt published despite the failing queue")
	}
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	q := r.queuedCrashes(t)
	if len(q) != 1 || q[0].Core.Key != corepipe.CoreKey(c) {
		t.Fatalf("queued %+v", q)
	}
	if n := quota.asked.Load(); n != 1 {
		t.Errorf("the quota was asked %d times, want once", n)
	}
	if n := value(r.agent.m.decisions.WithLabelValues("shipped")); n != 1 {
		t.Errorf("%v shipped decisions, want 1", n)
	}
}
