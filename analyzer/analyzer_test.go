package analyzer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/internal/testkit/pipetest"
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

func (f *fakeInspector) Inspect(ctx context.Context, c *corepipe.Crash, corePath, exePath string, report *os.File) error {
	f.calls++
	got, err := os.ReadFile(corePath)
	if err != nil || !bytes.Equal(got, f.core) {
		f.t.Errorf("inspector got core %q (%v), want the decompressed %q", got, err, f.core)
	}
	if exe, err := os.ReadFile(exePath); err != nil || string(exe) != "exe" {
		f.t.Errorf("inspector got executable %q (%v)", exe, err)
	}
	if f.err != nil {
		return f.err
	}
	return f.report.WriteJSON(report, true)
}

type rig struct {
	blobs *fs.Store
	queue *natsq.Queue
}

func newRig(t *testing.T) *rig {
	t.Helper()
	p := pipetest.Start(t)
	return &rig{blobs: p.Blobs, queue: p.Queue}
}

// stored puts a crash's core and executable in the blob store and queues it.
func (r *rig) stored(t *testing.T, core []byte) *corepipe.Crash {
	t.Helper()
	now := time.Now()
	c := &corepipe.Crash{ID: corepipe.NewID(now), CapturedAt: now, Node: "n1",
		Process: corepipe.Process{PID: 99, Exe: "/bin/app"}, Signal: corepipe.Signal{Number: 6, Name: "SIGABRT"}}
	var z bytes.Buffer
	enc, _ := zstd.NewWriter(&z)
	enc.Write(core)
	enc.Close()
	c.Core.Key = corepipe.CoreKey(c)
	r.queueWithCore(t, c, z.Bytes())
	return c
}

// queueWithCore stores z as c's core, and an executable, and queues c.
func (r *rig) queueWithCore(t *testing.T, c *corepipe.Crash, z []byte) {
	t.Helper()
	c.Executable.Key = corepipe.ExecutableKey("b1")
	r.put(t, c.Core.Key, z)
	r.put(t, c.Executable.Key, []byte("exe"))
	r.publish(t, c)
}

// put stores data under key.
func (r *rig) put(t *testing.T, key string, data []byte) {
	t.Helper()
	if err := r.blobs.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

// publish queues c.
func (r *rig) publish(t *testing.T, c *corepipe.Crash) {
	t.Helper()
	if err := r.queue.PublishCrash(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// analyse has an analyzer with insp handle the next queued crash, and
// returns c's stored report.
func (r *rig) analyse(t *testing.T, c *corepipe.Crash, insp Inspector) *corepipe.Report {
	t.Helper()
	a := New(Config{Blobs: r.blobs, Queue: r.queue, Inspector: insp, TempDir: t.TempDir()})
	a.Handle(context.Background(), r.next(t))
	return r.report(t, c.ID)
}

// next takes the next crash off the work queue.
func (r *rig) next(t *testing.T) corepipe.Message {
	t.Helper()
	cons, err := r.queue.Crashes(context.Background(), "analyzer")
	if err != nil {
		t.Fatal(err)
	}
	return within(t, cons, 10*time.Second)
}

// within takes cons's next message, failing t if none comes within d.
func within(t *testing.T, cons corepipe.Consumer, d time.Duration) corepipe.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	msg, err := cons.Next(ctx)
	if err != nil {
		t.Fatalf("no message within %v: %v", d, err)
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
	rep, err := corepipe.ReadStored(rc)
	if err != nil {
		t.Fatal(err)
	}
	return rep
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
	rep := r.analyse(t, c, insp)
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
	var summary corepipe.Report
	json.Unmarshal(within(t, reports, 5*time.Second).Data(), &summary)
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
	rep := r.analyse(t, c, insp)
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
	second := within(t, cons, 20*time.Second)
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
	r.publish(t, c)
	insp := &fakeInspector{t: t}
	rep := r.analyse(t, c, insp)
	// A core the collector chose not to keep is no failure: the crash is
	// recorded as dropped, saying why.
	if rep.Status != corepipe.StatusDropped || !bytes.Contains([]byte(rep.Title), []byte("rlimit_core=0")) || rep.Error != "" || insp.calls != 0 {
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
			err := c.Inspect(context.Background(), nil, "core", "exe", newReportFile(t))
			if err == nil || errors.Is(err, corepipe.ErrInvalid) != tc.invalid {
				t.Errorf("err %v, invalid %v", err, tc.invalid)
			}
		})
	}
	c := Child{Command: []string{"sh", "-c", "sleep 10", "analyze"}, Timeout: 200 * time.Millisecond}
	if err := c.Inspect(context.Background(), nil, "core", "exe", newReportFile(t)); !errors.Is(err, corepipe.ErrInvalid) {
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

// storedCompressed queues a crash whose stored core is z, declared to
// expand to size bytes (0: not declared).
func (r *rig) storedCompressed(t *testing.T, z []byte, size int64) *corepipe.Crash {
	t.Helper()
	now := time.Now()
	c := &corepipe.Crash{ID: corepipe.NewID(now), CapturedAt: now, Node: "n1", Process: corepipe.Process{PID: 7, Exe: "/bin/bomb"}}
	c.Core = corepipe.CoreArtifact{Key: corepipe.CoreKey(c), Size: size, StoredSize: int64(len(z))}
	r.queueWithCore(t, c, z)
	return c
}

// zeroBomb is a zstd frame of n zero bytes (a multiple of 128 KiB) in RLE
// blocks of four bytes each: 4 GiB is 128 KiB of it.
func zeroBomb(n int64) []byte {
	const block = 128 << 10
	// Magic number; a header with no content size; a 1 MiB window.
	z := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 10 << 3}
	for left := n; left > 0; left -= block {
		h := uint32(block<<3 | 1<<1) // an RLE block of 128 KiB
		if left <= block {
			h |= 1 // the last
		}
		z = append(z, byte(h), byte(h>>8), byte(h>>16), 0)
	}
	return z
}

func TestZeroBombIsZstd(t *testing.T) {
	zr, err := zstd.NewReader(bytes.NewReader(zeroBomb(1 << 20)))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	b, err := io.ReadAll(zr)
	if err != nil || len(b) != 1<<20 || bytes.ContainsFunc(b, func(r rune) bool { return r != 0 }) {
		t.Fatalf("decoded %d bytes, %v", len(b), err)
	}
}

// waitReport waits for crash id's report to be stored.
func (r *rig) waitReport(t *testing.T, id string) *corepipe.Report {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := r.blobs.Stat(context.Background(), corepipe.ReportKey(id)); err == nil {
			return r.report(t, id)
		}
	}
	t.Fatalf("no report for %s", id)
	return nil
}

// A core of 4 GiB of zero pages stores as 128 KiB: it must stop expanding
// at the size its manifest declares, fail with a report that says so, and
// leave the worker to analyse the next crash.
func TestZipBombCoreFails(t *testing.T) {
	r := newRig(t)
	bomb := r.storedCompressed(t, zeroBomb(4<<30), 1<<20)
	good := r.stored(t, []byte("a fine core"))
	scratch := t.TempDir()
	insp := &fakeInspector{t: t, core: []byte("a fine core"), report: &corepipe.Report{Status: corepipe.StatusAnalyzed, Title: "fine"}}
	a := New(Config{Blobs: r.blobs, Queue: r.queue, Inspector: insp, TempDir: scratch, Workers: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	rep := r.waitReport(t, bomb.ID)
	next := r.waitReport(t, good.ID)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rep.Status != corepipe.StatusFailed || rep.Error != "fetch core: invalid: core expands beyond its declared size of 1048576 bytes" {
		t.Errorf("the bomb's report: status %q, error %q", rep.Status, rep.Error)
	}
	if next.Status != corepipe.StatusAnalyzed || next.Title != "fine" || insp.calls != 1 {
		t.Errorf("the next crash: status %q, title %q, inspector calls %d", next.Status, next.Title, insp.calls)
	}
	if left, _ := os.ReadDir(scratch); len(left) > 0 {
		t.Errorf("scratch space left behind: %v", left)
	}
}

// Without a declared size, the configured maximum holds.
func TestCoreBeyondConfiguredMaximumFails(t *testing.T) {
	r := newRig(t)
	c := r.storedCompressed(t, zeroBomb(64<<20), 0)
	insp := &fakeInspector{t: t}
	a := New(Config{Blobs: r.blobs, Queue: r.queue, Inspector: insp, TempDir: t.TempDir(), MaxCoreSize: 8 << 20})
	a.Handle(context.Background(), r.next(t))
	if rep := r.report(t, c.ID); rep.Status != corepipe.StatusFailed || !strings.Contains(rep.Error, "core expands beyond the analyzer's limit of 8 MiB") || insp.calls != 0 {
		t.Errorf("report: status %q, error %q; inspector calls %d", rep.Status, rep.Error, insp.calls)
	}
}

// refusingStore gives up on every Put without reading, as a store does
// whose connection drops.
type refusingStore struct{ corepipe.BlobStore }

func (refusingStore) Put(context.Context, string, io.Reader, int64) error {
	return errors.New("connection reset")
}

// store must not return while the goroutine writing the report still runs:
// it reads the report (and its file), which the caller then lets go.
func TestStoreJoinsItsWriter(t *testing.T) {
	a := New(Config{Blobs: refusingStore{}})
	r := &corepipe.Report{Schema: corepipe.ReportSchema, ID: corepipe.NewID(time.Now())}
	for i := range 100_000 {
		r.Goroutines = append(r.Goroutines, corepipe.Goroutine{ID: int64(i + 1), Status: "chan receive",
			Frames: []corepipe.Frame{{Function: "main.worker", File: "/src/main.go", Line: 7, PC: "0x401000"}}})
	}
	if err := a.store(context.Background(), r, nil); err == nil {
		t.Fatal("store succeeded into a store that refuses")
	}
	buf := make([]byte, 1<<20)
	if stacks := buf[:runtime.Stack(buf, true)]; bytes.Contains(stacks, []byte("(*Analyzer).store.func")) {
		t.Errorf("store returned with its writer still running:\n%s", stacks)
	}
}

// A re-analysis keeps the crash's ID and carries its revision into the
// report it replaces; one that fails for good leaves the previous report
// in place rather than replacing a report with a failure.
func TestReanalysisReplacesReportOrKeepsIt(t *testing.T) {
	r := newRig(t)
	c := r.stored(t, []byte("core"))
	insp := &fakeInspector{t: t, core: []byte("core"), report: &corepipe.Report{Status: corepipe.StatusAnalyzed, Title: "first"}}
	a := New(Config{Blobs: r.blobs, Queue: r.queue, Inspector: insp, TempDir: t.TempDir()})
	a.Handle(context.Background(), r.next(t))

	republish := func(rev int) {
		t.Helper()
		c.Revision = rev
		if err := r.queue.RepublishCrash(context.Background(), c, fmt.Sprintf("r%d", rev)); err != nil {
			t.Fatal(err)
		}
	}
	republish(1)
	insp.report = &corepipe.Report{Status: corepipe.StatusAnalyzed, Title: "second"}
	a.Handle(context.Background(), r.next(t))
	if rep := r.report(t, c.ID); rep.Title != "second" || rep.Revision != 1 || rep.ID != c.ID {
		t.Errorf("re-analysed report %s revision %d %q, want %s revision 1 \"second\"", rep.ID, rep.Revision, rep.Title, c.ID)
	}

	republish(2)
	insp.err = fmt.Errorf("%w: delve gave up", corepipe.ErrInvalid)
	a.Handle(context.Background(), r.next(t))
	if rep := r.report(t, c.ID); rep.Status != corepipe.StatusAnalyzed || rep.Title != "second" || rep.Revision != 1 {
		t.Errorf("after a failed re-analysis the report is %s %q revision %d, want the previous one", rep.Status, rep.Title, rep.Revision)
	}
	if r.pending(t) {
		t.Error("a failed re-analysis must be acked")
	}
}
