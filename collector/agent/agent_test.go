package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit/blobtest"
	"github.com/corepipe/corepipe/internal/testkit/pipetest"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// writeEntry lays out a committed spool entry the way the collector does.
func writeEntry(t *testing.T, spool string, c *corepipe.Crash, core, exe []byte) {
	t.Helper()
	dir := filepath.Join(spool, c.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	files := map[string][]byte{"manifest.json": b}
	if core != nil {
		files["core.zst"] = core
	}
	if exe != nil {
		files["executable"] = exe
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func newCrash(pid int) *corepipe.Crash {
	now := time.Now()
	return &corepipe.Crash{
		Schema: corepipe.ManifestSchema, ID: corepipe.NewID(now), CapturedAt: now, Node: "node-1",
		Process:    corepipe.Process{PID: pid, Exe: "/usr/bin/app"},
		Signal:     corepipe.Signal{Number: 6, Name: "SIGABRT"},
		Executable: corepipe.ExeArtifact{BuildID: "abc123", Found: true},
	}
}

type rig struct {
	spool spool.Spool
	blobs *fs.Store
	queue *natsq.Queue
	agent *Agent
}

func newRig(t *testing.T, blobs corepipe.BlobStore) *rig {
	t.Helper()
	p := pipetest.Start(t)
	if blobs == nil {
		blobs = p.Blobs
	}
	r := &rig{spool: spool.Spool{Dir: t.TempDir()}, blobs: p.Blobs, queue: p.Queue}
	r.agent = New(Config{Spool: r.spool, Blobs: blobs, Queue: p.Queue})
	return r
}

// queued drains the crashes work queue and returns the IDs it held.
func (r *rig) queued(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, c := range r.queuedCrashes(t) {
		ids = append(ids, c.ID)
	}
	return ids
}

func TestShipStoresThenQueuesThenDeletes(t *testing.T) {
	r := newRig(t, nil)
	c := newCrash(42)
	writeEntry(t, r.spool.Dir, c, []byte("compressed core"), []byte("\x7fELF executable"))

	n, err := r.agent.ShipAll(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("ShipAll = %d, %v", n, err)
	}
	if got := blobtest.Read(t, r.blobs, corepipe.CoreKey(c)); string(got) != "compressed core" {
		t.Errorf("stored core %q", got)
	}
	if got := blobtest.Read(t, r.blobs, corepipe.ExecutableKey("abc123")); string(got) != "\x7fELF executable" {
		t.Errorf("stored executable %q", got)
	}
	var stored corepipe.Crash
	if err := json.Unmarshal(blobtest.Read(t, r.blobs, corepipe.ManifestKey(c)), &stored); err != nil {
		t.Fatal(err)
	}
	if stored.Core.Key != corepipe.CoreKey(c) || stored.Executable.Key != corepipe.ExecutableKey("abc123") {
		t.Errorf("stored manifest keys: core %q, executable %q", stored.Core.Key, stored.Executable.Key)
	}
	if ids := r.queued(t); len(ids) != 1 || ids[0] != c.ID {
		t.Errorf("queued %v, want [%s]", ids, c.ID)
	}
	if entries, _ := r.spool.Entries(); len(entries) != 0 {
		t.Errorf("%d spool entries left after shipping", len(entries))
	}
	if _, ok := r.spool.ExecutableStored("abc123"); !ok {
		t.Error("the executable was not marked stored, so the collector will copy it again")
	}
}

// The collector skips copying an executable the spool knows is stored; the
// agent must still point the manifest at it.
func TestShipKnownExecutable(t *testing.T) {
	r := newRig(t, nil)
	first, second := newCrash(1), newCrash(2)
	writeEntry(t, r.spool.Dir, first, []byte("core 1"), []byte("exe"))
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	// As the collector records it when the marker's content matched.
	second.Executable.SHA256 = sha256Hex("exe")
	writeEntry(t, r.spool.Dir, second, []byte("core 2"), nil)
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	var stored corepipe.Crash
	json.Unmarshal(blobtest.Read(t, r.blobs, corepipe.ManifestKey(second)), &stored)
	if stored.Executable.Key != corepipe.ExecutableKey("abc123") {
		t.Errorf("second crash's executable key %q", stored.Executable.Key)
	}
}

// failingStore is the blob store while its server is down.
type failingStore struct {
	corepipe.BlobStore
	down bool
}

// downStore is a filesystem store, down until the test sets down false.
func downStore(t *testing.T) *failingStore {
	t.Helper()
	store, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &failingStore{BlobStore: store, down: true}
}

func (f *failingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if f.down {
		return corepipe.ErrUnavailable
	}
	return f.BlobStore.Put(ctx, key, r, size)
}

func (f *failingStore) Stat(ctx context.Context, key string) (int64, error) {
	if f.down {
		return 0, corepipe.ErrUnavailable
	}
	return f.BlobStore.Stat(ctx, key)
}

// While storage is down nothing is lost and nothing is queued; once it is
// back every crash goes out exactly once.
func TestStorageDownKeepsSpool(t *testing.T) {
	failing := downStore(t)
	r := newRig(t, failing)
	a, b := newCrash(1), newCrash(2)
	writeEntry(t, r.spool.Dir, a, []byte("core a"), []byte("exe"))
	writeEntry(t, r.spool.Dir, b, []byte("core b"), nil)

	if _, err := r.agent.ShipAll(context.Background()); !errors.Is(err, corepipe.ErrUnavailable) {
		t.Fatalf("ShipAll with storage down: %v", err)
	}
	if entries, _ := r.spool.Entries(); len(entries) != 2 {
		t.Fatalf("%d spool entries after a failed upload, want 2", len(entries))
	}
	failing.down = false
	if n, err := r.agent.ShipAll(context.Background()); err != nil || n != 2 {
		t.Fatalf("ShipAll after recovery = %d, %v", n, err)
	}
	if ids := r.queued(t); len(ids) != 2 {
		t.Errorf("queued %v, want both crashes once", ids)
	}
}

// An agent killed after queueing but before deleting ships the entry again
// on restart; the queue must drop the duplicate.
func TestReshipIsDeduplicated(t *testing.T) {
	r := newRig(t, nil)
	c := newCrash(7)
	writeEntry(t, r.spool.Dir, c, []byte("core"), []byte("exe"))
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeEntry(t, r.spool.Dir, c, []byte("core"), []byte("exe"))
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ids := r.queued(t); len(ids) != 1 {
		t.Errorf("queued %v, want one message", ids)
	}
}

func TestManifestOnlyEntry(t *testing.T) {
	r := newRig(t, nil)
	c := newCrash(9)
	c.Core.Dropped = "rlimit_core=0"
	writeEntry(t, r.spool.Dir, c, nil, nil)
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	var stored corepipe.Crash
	json.Unmarshal(blobtest.Read(t, r.blobs, corepipe.ManifestKey(c)), &stored)
	if stored.Core.Key != "" || stored.Core.Dropped != "rlimit_core=0" {
		t.Errorf("manifest-only crash stored as %+v", stored.Core)
	}
	if !bytes.Contains(blobtest.Read(t, r.blobs, corepipe.ManifestKey(c)), []byte(c.ID)) {
		t.Error("manifest lacks the crash ID")
	}
}

// A broken entry must not hold back the crashes behind it: it is moved aside
// for a person to look at, and the rest ship.
func TestCorruptEntryIsQuarantined(t *testing.T) {
	r := newRig(t, nil)
	good := newCrash(2)
	bad := corepipe.NewID(time.Now().Add(-time.Hour))
	if err := os.MkdirAll(filepath.Join(r.spool.Dir, bad), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.spool.Dir, bad, "manifest.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeEntry(t, r.spool.Dir, good, []byte("core"), []byte("exe"))

	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatalf("ShipAll: %v", err)
	}
	if ids := r.queued(t); len(ids) != 1 || ids[0] != good.ID {
		t.Errorf("queued %v, want the good crash behind the broken one", ids)
	}
	if _, err := os.Stat(filepath.Join(r.spool.Dir, spool.QuarantineDir, bad, "manifest.json")); err != nil {
		t.Errorf("broken entry not kept in quarantine: %v", err)
	}
	if entries, _ := r.spool.Entries(); len(entries) != 0 {
		t.Errorf("%d entries left in the spool", len(entries))
	}
}

// downQueue is the queue while NATS is down.
type downQueue struct{}

func (downQueue) PublishCrash(context.Context, *corepipe.Crash) error { return corepipe.ErrUnavailable }

// A stored manifest must mean a published crash: a restarted termination
// watcher skips records whose manifest it finds.
func TestRecordStoresManifestOnlyOncePublished(t *testing.T) {
	store, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := New(Config{Spool: spool.Spool{Dir: t.TempDir()}, Blobs: store, Queue: downQueue{}})
	c := newCrash(3)
	c.Core.Dropped = "no core: OOMKilled"
	if err := a.ShipRecord(context.Background(), c); !errors.Is(err, corepipe.ErrUnavailable) {
		t.Fatalf("ShipRecord with the queue down: %v", err)
	}
	if _, err := store.Stat(context.Background(), corepipe.ManifestKey(c)); !errors.Is(err, corepipe.ErrNotFound) {
		t.Errorf("manifest stored though the crash was never published: %v", err)
	}
}
