package analyzer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/internal/natstest"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// fakeInspector checks it was handed the decompressed core and the
// executable, and answers as told.
type fakeInspector struct {
	t      *testing.T
	core   []byte
	report *corepipe.Report
	err    error
	calls  int
}

func (f *fakeInspector) Inspect(ctx context.Context, corePath, exePath string) (*corepipe.Report, error) {
	f.calls++
	got, err := os.ReadFile(corePath)
	if err != nil || !bytes.Equal(got, f.core) {
		f.t.Errorf("inspector got core %q (%v), want the decompressed %q", got, err, f.core)
	}
	if exe, err := os.ReadFile(exePath); err != nil || string(exe) != "exe" {
		f.t.Errorf("inspector got executable %q (%v)", exe, err)
	}
	return f.report, f.err
}

type rig struct {
	blobs *fs.Store
	queue *natsq.Queue
}

func newRig(t *testing.T) *rig {
	t.Helper()
	srv := natstest.StartEmbedded(t)
	q, err := natsq.Open(context.Background(), srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(context.Background()) })
	blobs, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &rig{blobs: blobs, queue: q}
}

// stored puts a crash's core and executable in the blob store and queues it.
func (r *rig) stored(t *testing.T, core []byte) *corepipe.Crash {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	c := &corepipe.Crash{ID: corepipe.NewID(now), CapturedAt: now, Node: "n1",
		Process: corepipe.Process{PID: 99, Exe: "/bin/app"}, Signal: corepipe.Signal{Number: 6, Name: "SIGABRT"}}
	var z bytes.Buffer
	enc, _ := zstd.NewWriter(&z)
	enc.Write(core)
	enc.Close()
	c.Core.Key = corepipe.CoreKey(c)
	c.Executable.Key = corepipe.ExecutableKey("b1")
	if err := r.blobs.Put(ctx, c.Core.Key, bytes.NewReader(z.Bytes()), int64(z.Len())); err != nil {
		t.Fatal(err)
	}
	if err := r.blobs.Put(ctx, c.Executable.Key, bytes.NewReader([]byte("exe")), 3); err != nil {
		t.Fatal(err)
	}
	if err := r.queue.PublishCrash(ctx, c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (r *rig) next(t *testing.T) corepipe.Message {
	t.Helper()
	cons, err := r.queue.Crashes(context.Background(), "analyzer")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := cons.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func (r *rig) report(t *testing.T, id string) *corepipe.Report {
	t.Helper()
	rc, err := r.blobs.Get(context.Background(), corepipe.ReportKey(id))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var rep corepipe.Report
	if err := json.NewDecoder(rc).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

// pending reports whether the work queue still holds a message.
func (r *rig) pending(t *testing.T) bool {
	cons, _ := r.queue.Crashes(context.Background(), "analyzer")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := cons.Next(ctx)
	return err == nil
}

func TestHandleStoresReportAndAcks(t *testing.T) {
	r := newRig(t)
	c := r.stored(t, []byte("the raw core"))
	insp := &fakeInspector{t: t, core: []byte("the raw core"), report: &corepipe.Report{
		Status: corepipe.StatusAnalyzed, Title: "nil pointer dereference in main.f",
		Signal:            &corepipe.Signal{Number: 11, Name: "SIGSEGV"},
		CrashingGoroutine: 1,
		Goroutines:        []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{{Function: "main.f"}}}},
	}}
	a := New(Config{Blobs: r.blobs, Queue: r.queue, Inspector: insp, TempDir: t.TempDir()})
	a.Handle(context.Background(), r.next(t))

	rep := r.report(t, c.ID)
	if rep.Status != corepipe.StatusAnalyzed || rep.Title != "nil pointer dereference in main.f" || len(rep.Goroutines) != 1 {
		t.Errorf("stored report %+v", rep)
	}
	if rep.Signal.Name != "SIGABRT" {
		t.Errorf("signal %+v: the kernel's account must win over the core's", rep.Signal)
	}
	if rep.Process.PID != 99 || rep.Node != "n1" || rep.Artifacts.Core.Key != c.Core.Key {
		t.Errorf("manifest fields lost: %+v", rep)
	}
	if r.pending(t) {
		t.Error("crash still queued after its report was stored")
	}
	reports, err := r.queue.Reports(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg, err := reports.Next(ctx)
	if err != nil {
		t.Fatalf("no report announced: %v", err)
	}
	var summary corepipe.Report
	json.Unmarshal(msg.Data(), &summary)
	if summary.ID != c.ID || summary.Goroutines != nil {
		t.Errorf("announced %+v, want the summary of %s", summary, c.ID)
	}
}

// A core the inspector rejects gets a failed report at once: retrying gives
// the same answer.
func TestHandleInvalidCoreFails(t *testing.T) {
	r := newRig(t)
	c := r.stored(t, []byte("junk"))
	insp := &fakeInspector{t: t, core: []byte("junk"), err: fmt.Errorf("%w: not an ELF core", corepipe.ErrInvalid)}
	a := New(Config{Blobs: r.blobs, Queue: r.queue, Inspector: insp, TempDir: t.TempDir()})
	a.Handle(context.Background(), r.next(t))
	rep := r.report(t, c.ID)
	if rep.Status != corepipe.StatusFailed || rep.Error == "" {
		t.Errorf("report %+v, want failed with the error", rep)
	}
	if r.pending(t) {
		t.Error("a failed crash must be acked, not redelivered")
	}
}

// A passing failure is retried until MaxDeliver, then becomes a failed
// report: never a silent drop.
func TestHandleRetriesThenFails(t *testing.T) {
	r := newRig(t)
	c := r.stored(t, []byte("core"))
	insp := &fakeInspector{t: t, core: []byte("core"), err: errors.New("disk hiccup")}
	a := New(Config{Blobs: r.blobs, Queue: r.queue, Inspector: insp, TempDir: t.TempDir(), MaxDeliver: 2})

	first := r.next(t)
	a.Handle(context.Background(), first)
	if _, err := r.blobs.Stat(context.Background(), corepipe.ReportKey(c.ID)); !errors.Is(err, corepipe.ErrNotFound) {
		t.Fatalf("a report was stored after the first passing failure: %v", err)
	}
	// The nak asked for a delay; take the redelivery when it comes.
	cons, _ := r.queue.Crashes(context.Background(), "analyzer")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	second, err := cons.Next(ctx)
	if err != nil {
		t.Fatalf("no redelivery: %v", err)
	}
	if second.Deliveries() != 2 {
		t.Fatalf("deliveries %d, want 2", second.Deliveries())
	}
	a.Handle(context.Background(), second)
	rep := r.report(t, c.ID)
	if rep.Status != corepipe.StatusFailed || rep.Error != "disk hiccup" {
		t.Errorf("report after the last attempt: %+v", rep)
	}
}

func TestHandleMissingCore(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	c := &corepipe.Crash{ID: corepipe.NewID(now), CapturedAt: now, Core: corepipe.CoreArtifact{Dropped: "rlimit_core=0"}}
	if err := r.queue.PublishCrash(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	insp := &fakeInspector{t: t}
	a := New(Config{Blobs: r.blobs, Queue: r.queue, Inspector: insp, TempDir: t.TempDir()})
	a.Handle(context.Background(), r.next(t))
	rep := r.report(t, c.ID)
	if rep.Status != corepipe.StatusFailed || !bytes.Contains([]byte(rep.Error), []byte("rlimit_core=0")) || insp.calls != 0 {
		t.Errorf("report %+v, inspector calls %d", rep, insp.calls)
	}
}

func TestChildErrors(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		invalid      bool
	}{
		{"exit 2 is invalid input", "echo 'corepipe: not an ELF core' >&2; exit 2", true},
		{"killed child is invalid", "kill -SEGV $$", true},
		{"other exit may pass", "echo 'corepipe: disk full' >&2; exit 1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Child{Command: []string{"sh", "-c", tc.script, "analyze"}}
			_, err := c.Inspect(context.Background(), "core", "exe")
			if err == nil || errors.Is(err, corepipe.ErrInvalid) != tc.invalid {
				t.Errorf("err %v, invalid %v", err, tc.invalid)
			}
		})
	}
	c := Child{Command: []string{"sh", "-c", "sleep 10", "analyze"}, Timeout: 200 * time.Millisecond}
	if _, err := c.Inspect(context.Background(), "core", "exe"); !errors.Is(err, corepipe.ErrInvalid) {
		t.Errorf("hung child: %v", err)
	}
}

// fakeMessage is a delivery whose count the test chooses.
type fakeMessage struct {
	data       []byte
	deliveries int
	acked      bool
}

func (m *fakeMessage) Data() []byte                             { return m.data }
func (m *fakeMessage) Deliveries() int                          { return m.deliveries }
func (m *fakeMessage) Ack(context.Context) error                { m.acked = true; return nil }
func (m *fakeMessage) Nak(context.Context, time.Duration) error { return nil }
func (m *fakeMessage) InProgress(context.Context) error         { return nil }
func (m *fakeMessage) Term(context.Context) error               { return nil }

// A crash whose every attempt killed its worker comes back once more; that
// delivery must write the failed report rather than try again, or the queue
// would drop the crash silently at its own limit.
func TestHandleBeyondMaxDeliverFailsWithoutAnalysis(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	c := &corepipe.Crash{ID: corepipe.NewID(now), CapturedAt: now, Core: corepipe.CoreArtifact{Key: "cores/x/core.zst"}}
	data, _ := json.Marshal(c)
	insp := &fakeInspector{t: t}
	a := New(Config{Blobs: r.blobs, Queue: r.queue, Inspector: insp, TempDir: t.TempDir(), MaxDeliver: 3})
	msg := &fakeMessage{data: data, deliveries: 4}
	a.Handle(context.Background(), msg)
	rep := r.report(t, c.ID)
	if rep.Status != corepipe.StatusFailed || !bytes.Contains([]byte(rep.Error), []byte("3 attempts")) {
		t.Errorf("report %+v", rep)
	}
	if insp.calls != 0 || !msg.acked {
		t.Errorf("inspector calls %d, acked %v: want no analysis and an ack", insp.calls, msg.acked)
	}
	if QueueMaxDeliver(3) <= 3 {
		t.Error("the queue must deliver once more than the analyzer attempts")
	}
}
