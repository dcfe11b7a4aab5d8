// Package agent is the node agent: it ships committed spool entries to the
// blob store and queues them for analysis, deleting an entry only once both
// the blob store and the queue have confirmed it.
package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/spool"
)

// Publisher queues a captured crash; the agent needs nothing else of the queue.
type Publisher interface {
	PublishCrash(ctx context.Context, c *corepipe.Crash) error
}

// Enricher adds to a crash what the node knows beyond its spool entry — on
// Kubernetes, the pod of its container. It must return within a short bound
// whatever it learnt: shipping waits for it.
type Enricher interface {
	Enrich(ctx context.Context, c *corepipe.Crash)
}

// Observer is told of every crash once it is published.
type Observer interface {
	Shipped(ctx context.Context, c *corepipe.Crash)
}

// Config is what an Agent needs.
type Config struct {
	Spool spool.Spool
	Blobs corepipe.BlobStore
	Queue Publisher
	// Poll is how often the spool is scanned when nothing wakes the agent.
	Poll time.Duration
	// MaxBackoff bounds the wait between retries while storage or the queue
	// is down.
	MaxBackoff time.Duration
	// StaleAfter is how old a collector's unfinished entry must be before it
	// is taken for abandoned and removed.
	StaleAfter time.Duration
	Logger     *slog.Logger
	// Enricher, when set, completes each crash before its manifest is
	// stored; Observer, when set, hears of each published crash.
	Enricher Enricher
	Observer Observer
	// Registerer, when set, gets the agent's metrics.
	Registerer prometheus.Registerer
	// Guard, when set, is the core_pattern installation the agent keeps
	// while it runs.
	Guard *Guard
	// Policy, when set, decides which cores leave the node; without it
	// every core is shipped.
	Policy *CorePolicy
}

// Agent ships the spool.
type Agent struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	// seen holds the IDs of the entries already counted as captured.
	seen map[string]bool
	keptLocks
}

// New returns an agent with defaults filled in.
func New(cfg Config) *Agent {
	if cfg.Poll == 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = 30 * time.Minute
	}
	if p := cfg.Policy; p != nil && p.Queue == nil {
		if r, ok := cfg.Queue.(Republisher); ok {
			p.Queue = r
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, log: log, m: newMetrics(cfg.Registerer)}
}

// Run ships entries until ctx is cancelled: at once when the collector
// commits one (inotify), else every Poll. Failures are retried with
// exponential backoff and jitter; entries wait in the spool meanwhile.
func (a *Agent) Run(ctx context.Context) error {
	w, err := watchSpool(a.cfg.Spool.Dir)
	if err != nil {
		a.log.Warn("spool not watched, polling it only", "err", err, "poll", a.cfg.Poll)
	}
	defer w.Close()
	var guard <-chan time.Time
	if a.cfg.Guard != nil {
		t := time.NewTicker(a.cfg.Guard.every())
		defer t.Stop()
		guard = t.C
	}
	backoff := time.Duration(0)
	lastClean := time.Time{}
	for {
		if time.Since(lastClean) > a.keptSweep() {
			a.clean()
			a.expireKept(ctx, time.Now())
			lastClean = time.Now()
		}
		wait := a.cfg.Poll
		if _, err := a.ShipAll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			backoff = nextBackoff(backoff, a.cfg.MaxBackoff)
			wait = jitter(backoff)
			a.log.Warn("shipping paused", "err", err, "retry_in", wait)
		} else {
			backoff = 0
		}
		timer := time.NewTimer(wait)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
				waiting = false
			case <-w.Wake():
				// While backing off, a new entry waits with the others.
				waiting = backoff > 0
			case <-guard:
				a.check(a.cfg.Guard)
			}
		}
		timer.Stop()
	}
}

// clean removes what collectors abandoned and rate limit windows that ended.
func (a *Agent) clean() {
	if n, err := a.cfg.Spool.CleanStale(a.cfg.StaleAfter); err != nil {
		a.log.Warn("clean stale spool entries", "err", err)
	} else if n > 0 {
		a.log.Info("removed abandoned spool entries", "count", n)
	}
	if _, err := a.cfg.Spool.CleanRateLimits(time.Now()); err != nil {
		a.log.Warn("clean rate limit windows", "err", err)
	}
	if _, err := a.cfg.Spool.CleanHashCache(24 * time.Hour); err != nil {
		a.log.Warn("clean executable hash cache", "err", err)
	}
}

// ShipAll ships every committed entry in time order and returns how many it
// shipped. It stops at the first entry that cannot be shipped: the likely
// cause (storage or queue down) would fail the rest too.
func (a *Agent) ShipAll(ctx context.Context) (int, error) {
	entries, err := a.cfg.Spool.Entries()
	if errors.Is(err, spool.ErrSymlink) {
		// Someone planted a link in the root-owned spool: never follow it,
		// keep shipping the real entries.
		a.log.Warn("spool holds symlinks, skipped", "err", err)
	} else if err != nil {
		return 0, fmt.Errorf("list spool: %w", err)
	}
	a.observe(entries)
	for i, e := range entries {
		err := a.Ship(ctx, e)
		if errors.Is(err, corepipe.ErrInvalid) {
			// Retrying cannot fix a broken entry, and waiting on it would
			// hold back every crash behind it.
			a.log.Error("spool entry cannot be shipped, quarantined", corepipe.LogKeyCrash, e.ID, "err", err)
			if qerr := e.Quarantine(); qerr != nil {
				return i, qerr
			}
			a.m.quarantined.Inc()
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				a.m.retries.Inc()
			}
			a.waiting(entries[i:], time.Now())
			return i, fmt.Errorf("crash %s: %w", e.ID, err)
		}
		a.m.uploaded.Inc()
	}
	a.waiting(nil, time.Now())
	return len(entries), nil
}

// Ship stores one entry's executable, core and manifest, publishes it, and
// then removes it from the spool. Every step is idempotent, so an entry whose
// shipping was interrupted is shipped again whole, and the queue drops the
// duplicate message by crash ID.
func (a *Agent) Ship(ctx context.Context, e spool.Entry) error {
	start := time.Now()
	c, err := e.Manifest()
	if err != nil {
		return err
	}
	log := a.log.With(corepipe.LogKeyCrash, c.ID)

	if err := a.shipExecutable(ctx, e, c); err != nil {
		return err
	}
	kept := false
	if l := c.Core.Location; l != nil && l.State == corepipe.CoreOnNode && e.CorePath() != "" {
		// Decided by an earlier attempt, which died before the entry was
		// kept: its crash may be published already, saying so.
		kept = true
	} else if c.Core.Key != "" && a.cfg.Policy != nil {
		// Stored by an earlier attempt, whose publish failed: the quota
		// admitted it then and is not asked again, which could keep on
		// the node a core already in the store.
	} else if p := e.CorePath(); p != "" {
		d := &decision{ship: true}
		if a.cfg.Policy != nil {
			if d, err = a.decide(ctx, e, c, p); err != nil {
				return err
			}
			defer d.close()
		}
		if d.ship {
			key := corepipe.CoreKey(c)
			if err := a.putFile(ctx, key, p); err != nil {
				return fmt.Errorf("store core: %w", err)
			}
			c.Core.Key = key
			if a.cfg.Policy != nil {
				// The decision is written down before the crash is
				// published, as a kept core's is.
				if err := writeManifest(e, c); err != nil {
					return err
				}
			}
		} else {
			if err := a.keep(ctx, c, d); err != nil {
				return err
			}
			// The decision is written down before the crash is
			// published: a retry publishes the same.
			if err := writeManifest(e, c); err != nil {
				return err
			}
			kept = true
		}
	}
	c.Timings.UploadMS = time.Since(start).Milliseconds()

	// Enriched after the upload: the longer after the crash, the likelier
	// the pod's status already names the container.
	if a.cfg.Enricher != nil {
		a.cfg.Enricher.Enrich(ctx, c)
	}
	if err := a.record(ctx, c); err != nil {
		return err
	}
	if kept {
		a.keptMu.Lock()
		err := a.keepEntry(e, c)
		a.keptMu.Unlock()
		if err != nil {
			return err
		}
		log.Info("crash shipped, its core kept on the node", "until", c.Core.Location.Until, "reason", c.Core.Location.Reason,
			"core_bytes", c.Core.Size, "stored_bytes", c.Core.StoredSize)
		return nil
	}
	if err := e.Remove(); err != nil {
		return fmt.Errorf("remove shipped spool entry: %w", err)
	}
	log.Info("crash shipped", "pid", c.Process.PID, "exe", c.Process.Exe, "core_bytes", c.Core.Size,
		"stored_bytes", c.Core.StoredSize, "upload_ms", c.Timings.UploadMS)
	return nil
}

// ShipRecord stores and publishes a crash that has no spool entry — a
// container seen ending badly, with no core. Like Ship it is idempotent:
// the same crash ID makes the same blob key and the queue drops the
// duplicate message.
func (a *Agent) ShipRecord(ctx context.Context, c *corepipe.Crash) error {
	if err := a.record(ctx, c); err != nil {
		return fmt.Errorf("crash %s: %w", c.ID, err)
	}
	a.log.Info("crash record shipped", corepipe.LogKeyCrash, c.ID, "dropped", c.Core.Dropped)
	return nil
}

// record publishes c, stores its manifest, and tells the observer. The
// manifest goes last so that a stored manifest means a published crash: the
// termination watcher of a restarted agent skips what it finds stored. A
// retry after a failed store publishes again, and the queue drops the
// duplicate by crash ID.
func (a *Agent) record(ctx context.Context, c *corepipe.Crash) error {
	manifest, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := a.cfg.Queue.PublishCrash(ctx, c); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := a.cfg.Blobs.Put(ctx, corepipe.ManifestKey(c), bytes.NewReader(manifest), int64(len(manifest))); err != nil {
		return fmt.Errorf("store manifest: %w", err)
	}
	if a.cfg.Observer != nil {
		a.cfg.Observer.Shipped(ctx, c)
	}
	return nil
}

// shipExecutable stores the executable once per content. A build ID is
// whatever the crashing program's notes say, so the object already under
// executables/<build ID> may be another program's (a squatter's, or a
// collision): the agent compares content before taking it for this one, and
// when it differs stores this executable under its sha256 instead, with a
// note, so neither the crash nor the debugger that downloads its executable
// gets the other program. A key that exists is never reason enough to skip
// an upload.
func (a *Agent) shipExecutable(ctx context.Context, e spool.Entry, c *corepipe.Crash) error {
	x := &c.Executable
	id := x.ContentID()
	if id == "" {
		return nil
	}
	p := e.ExecutablePath()
	if p == "" {
		// Not copied: the collector found the same content stored (see
		// its notes), under the build ID or under the sha256.
		if m, ok := a.cfg.Spool.ExecutableStored(id); ok && x.SHA256 != "" && m.SHA256 == x.SHA256 {
			x.Key = corepipe.ExecutableKey(id)
		} else if _, ok := a.cfg.Spool.ExecutableStored(x.SHA256); ok && x.SHA256 != "" {
			x.Key = corepipe.ExecutableKey(x.SHA256)
		}
		return nil
	}
	sum, size, err := hashFile(p)
	if err != nil {
		return fmt.Errorf("store executable: %w", err)
	}
	if x.SHA256 != "" && x.SHA256 != sum {
		return fmt.Errorf("spool entry %s: %w: executable does not match its manifest's sha256", e.ID, corepipe.ErrInvalid)
	}
	x.SHA256 = sum
	key := corepipe.ExecutableKey(id)
	stored, err := a.storedContent(ctx, key, size)
	if err != nil {
		return fmt.Errorf("store executable: %w", err)
	}
	switch {
	case stored.SHA256 == sum:
		// Already there, the same bytes.
	case stored == (spool.StoredExe{}) || id == sum:
		// Missing, or a content-addressed key holding other bytes, which
		// only a damaged store can: (re)write it.
		if err := a.putFile(ctx, key, p); err != nil {
			return fmt.Errorf("store executable: %w", err)
		}
		stored = spool.StoredExe{SHA256: sum, Size: size}
	default:
		// Another executable holds this build ID.
		if err := a.cfg.Spool.MarkExecutableStored(id, stored); err != nil {
			return err
		}
		a.log.Warn("build ID already stored with other content: executable stored under its sha256",
			corepipe.LogKeyCrash, c.ID, "build_id", id, "sha256", sum)
		c.Notes = append(c.Notes, fmt.Sprintf("executable build ID %s is already stored with other content: this executable is stored under its sha256 %s", id, sum))
		id, key = sum, corepipe.ExecutableKey(sum)
		if stored, err = a.storedContent(ctx, key, size); err != nil {
			return fmt.Errorf("store executable: %w", err)
		}
		if stored.SHA256 != sum {
			if err := a.putFile(ctx, key, p); err != nil {
				return fmt.Errorf("store executable: %w", err)
			}
		}
		stored = spool.StoredExe{SHA256: sum, Size: size}
	}
	if err := a.cfg.Spool.MarkExecutableStored(id, stored); err != nil {
		return err
	}
	x.Key = key
	return nil
}

// storedContent returns the sha256 and size of the object at key, the zero
// StoredExe when there is none. An object of another size than want is not
// read: it differs, and its hash is recorded as unknown.
func (a *Agent) storedContent(ctx context.Context, key string, want int64) (spool.StoredExe, error) {
	size, err := a.cfg.Blobs.Stat(ctx, key)
	if errors.Is(err, corepipe.ErrNotFound) {
		return spool.StoredExe{}, nil
	}
	if err != nil {
		return spool.StoredExe{}, err
	}
	if size != want {
		return spool.StoredExe{Size: size, SHA256: "unknown"}, nil
	}
	r, err := a.cfg.Blobs.Get(ctx, key)
	if err != nil {
		return spool.StoredExe{}, err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return spool.StoredExe{}, fmt.Errorf("read %s: %w", key, err)
	}
	return spool.StoredExe{SHA256: hex.EncodeToString(h.Sum(nil)), Size: size}, nil
}

// hashFile returns the sha256 and size of a spool file, never through a link.
func hashFile(path string) (string, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func (a *Agent) putFile(ctx context.Context, key, path string) error {
	// Never through a link planted in the spool.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := a.cfg.Blobs.Put(ctx, key, f, st.Size()); err != nil {
		return err
	}
	a.m.bytes.Add(float64(st.Size()))
	return nil
}

// keepEntry moves a shipped entry among the kept ones, with the manifest
// as shipped.
func (a *Agent) keepEntry(e spool.Entry, c *corepipe.Crash) error {
	// As shipped: the enricher may have added to it since it was written.
	if err := writeManifest(e, c); err != nil {
		return err
	}
	if _, err := e.Keep(); err != nil {
		return err
	}
	return nil
}

// keptSweep is how often the spool is swept: abandoned entries, and kept
// cores whose time is up.
func (a *Agent) keptSweep() time.Duration {
	d := a.cfg.StaleAfter / 4
	if p := a.cfg.Policy; p != nil {
		d = min(d, max(time.Second, p.ttl()/10))
	}
	return d
}
