// Package agent is the node agent: it ships committed spool entries to the
// blob store and queues them for analysis, deleting an entry only once both
// the blob store and the queue have confirmed it.
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector"
)

// Publisher queues a captured crash; the agent needs nothing else of the queue.
type Publisher interface {
	PublishCrash(ctx context.Context, c *corepipe.Crash) error
}

// Config is what an Agent needs.
type Config struct {
	Spool collector.Spool
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
}

// Agent ships the spool.
type Agent struct {
	cfg Config
	log *slog.Logger
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
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, log: log}
}

// Run ships entries until ctx is cancelled. Failures are retried with
// exponential backoff; entries wait in the spool meanwhile.
func (a *Agent) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	lastClean := time.Time{}
	for {
		if time.Since(lastClean) > a.cfg.StaleAfter/4 {
			if n, err := a.cfg.Spool.CleanStale(a.cfg.StaleAfter); err != nil {
				a.log.Warn("clean stale spool entries", "err", err)
			} else if n > 0 {
				a.log.Info("removed abandoned spool entries", "count", n)
			}
			lastClean = time.Now()
		}
		wait := a.cfg.Poll
		if _, err := a.ShipAll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			backoff = min(max(2*backoff, time.Second), a.cfg.MaxBackoff)
			wait = backoff
			a.log.Warn("shipping paused", "err", err, "retry_in", wait)
		} else {
			backoff = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// ShipAll ships every committed entry in time order and returns how many it
// shipped. It stops at the first entry that cannot be shipped: the likely
// cause (storage or queue down) would fail the rest too.
func (a *Agent) ShipAll(ctx context.Context) (int, error) {
	entries, err := a.cfg.Spool.Entries()
	if errors.Is(err, collector.ErrSymlink) {
		// Someone planted a link in the root-owned spool: never follow it,
		// keep shipping the real entries.
		a.log.Warn("spool holds symlinks, skipped", "err", err)
	} else if err != nil {
		return 0, fmt.Errorf("list spool: %w", err)
	}
	for i, e := range entries {
		if err := a.Ship(ctx, e); err != nil {
			return i, fmt.Errorf("crash %s: %w", e.ID, err)
		}
	}
	return len(entries), nil
}

// Ship stores one entry's executable, core and manifest, publishes it, and
// then removes it from the spool. Every step is idempotent, so an entry whose
// shipping was interrupted is shipped again whole, and the queue drops the
// duplicate message by crash ID.
func (a *Agent) Ship(ctx context.Context, e collector.Entry) error {
	start := time.Now()
	c, err := e.Manifest()
	if err != nil {
		return err
	}
	log := a.log.With("crash", c.ID)

	if err := a.shipExecutable(ctx, e, c); err != nil {
		return err
	}
	if p := e.CorePath(); p != "" {
		key := corepipe.CoreKey(c)
		if err := a.putFile(ctx, key, p); err != nil {
			return fmt.Errorf("store core: %w", err)
		}
		c.Core.Key = key
	}
	c.Timings.UploadMS = time.Since(start).Milliseconds()

	manifest, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := a.cfg.Blobs.Put(ctx, corepipe.ManifestKey(c), bytes.NewReader(manifest), int64(len(manifest))); err != nil {
		return fmt.Errorf("store manifest: %w", err)
	}
	if err := a.cfg.Queue.PublishCrash(ctx, c); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := e.Remove(); err != nil {
		return fmt.Errorf("remove shipped spool entry: %w", err)
	}
	log.Info("crash shipped", "pid", c.Process.PID, "exe", c.Process.Exe, "core_bytes", c.Core.Size,
		"stored_bytes", c.Core.StoredSize, "upload_ms", c.Timings.UploadMS)
	return nil
}

// shipExecutable stores the executable once per content ID. The collector
// skips copying an executable the spool says is stored; then only its key is
// recorded here.
func (a *Agent) shipExecutable(ctx context.Context, e collector.Entry, c *corepipe.Crash) error {
	id := c.Executable.ContentID()
	if id == "" {
		return nil
	}
	key := corepipe.ExecutableKey(id)
	p := e.ExecutablePath()
	switch {
	case p != "":
		if _, err := a.cfg.Blobs.Stat(ctx, key); errors.Is(err, corepipe.ErrNotFound) {
			if err := a.putFile(ctx, key, p); err != nil {
				return fmt.Errorf("store executable: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("store executable: %w", err)
		}
		if err := a.cfg.Spool.MarkExecutableStored(id); err != nil {
			return err
		}
	case !a.cfg.Spool.ExecutableStored(id):
		// Neither copied nor known: the collector could not read it.
		return nil
	}
	c.Executable.Key = key
	return nil
}

func (a *Agent) putFile(ctx context.Context, key, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return a.cfg.Blobs.Put(ctx, key, f, st.Size())
}
