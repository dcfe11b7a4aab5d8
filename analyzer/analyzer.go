// Package analyzer is the worker loop: it takes captured crashes off the
// queue, fetches their core and executable, has them inspected (in a child
// process), stores the report and announces it — acknowledging the crash only
// once the report is durable.
package analyzer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/corepipe/corepipe"
)

// Inspector turns a core and its executable into the analysed fields of a
// report.
type Inspector interface {
	Inspect(ctx context.Context, corePath, exePath string) (*corepipe.Report, error)
}

// Queue is what the analyzer needs of the queue.
type Queue interface {
	Crashes(ctx context.Context, durable string) (corepipe.Consumer, error)
	PublishReport(ctx context.Context, r *corepipe.Report) error
}

// Config is what an Analyzer needs.
type Config struct {
	Blobs     corepipe.BlobStore
	Queue     Queue
	Inspector Inspector
	// Workers is how many crashes are analysed at once.
	Workers int
	// Durable names the shared work-queue consumer.
	Durable string
	// MaxDeliver is how many attempts a crash gets. After the last one a
	// crash that keeps failing for a passing reason gets a failed report;
	// a delivery beyond it (the worker died during the last attempt) writes
	// the failed report without trying again. The queue's own limit must
	// therefore be above it: see QueueMaxDeliver.
	MaxDeliver int
	// TempDir holds the decompressed core while it is inspected.
	TempDir string
	// Heartbeat is how often a crash being analysed is marked in progress.
	Heartbeat time.Duration
	Logger    *slog.Logger
	// Registerer receives the analyzer's metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

// Analyzer runs the workers.
type Analyzer struct {
	cfg Config
	log *slog.Logger
	m   *metrics
}

// New returns an analyzer with defaults filled in.
func New(cfg Config) *Analyzer {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Durable == "" {
		cfg.Durable = "analyzer"
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = 5
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Analyzer{cfg: cfg, log: log, m: newMetrics(cfg.Registerer)}
}

// Run analyses crashes until ctx is cancelled.
func (a *Analyzer) Run(ctx context.Context) error {
	cons, err := a.cfg.Queue.Crashes(ctx, a.cfg.Durable)
	if err != nil {
		return fmt.Errorf("analyzer: %w", err)
	}
	var wg sync.WaitGroup
	for range a.cfg.Workers {
		wg.Go(func() { a.work(ctx, cons) })
	}
	wg.Wait()
	return nil
}

func (a *Analyzer) work(ctx context.Context, cons corepipe.Consumer) {
	for {
		msg, err := cons.Next(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.log.Warn("fetch crash", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		a.Handle(ctx, msg)
	}
}

// Handle analyses one queued crash and settles its message: acked once the
// report (analysed or failed) is stored and announced, nak'ed for a retry
// when the failure may pass.
func (a *Analyzer) Handle(ctx context.Context, msg corepipe.Message) {
	var c corepipe.Crash
	if err := json.Unmarshal(msg.Data(), &c); err != nil || corepipe.CheckID(c.ID) != nil {
		// Without an ID there is no report to write; keep the evidence in
		// the stream rather than redeliver it forever.
		a.log.Error("unreadable crash message dropped from the work queue", "err", err, "bytes", len(msg.Data()))
		msg.Term(ctx)
		return
	}
	log := a.log.With(corepipe.LogKeyCrash, c.ID)
	if msg.Deliveries() > a.cfg.MaxDeliver {
		r := corepipe.NewReport(&c)
		r.Status = corepipe.StatusFailed
		r.Error = fmt.Sprintf("analysis did not finish in %d attempts: the analyzer died or was stopped each time", a.cfg.MaxDeliver)
		a.settle(ctx, log, msg, r)
		return
	}

	stop := a.heartbeat(ctx, msg)
	start := time.Now()
	a.m.inFlight.Inc()
	r, err := a.analyse(ctx, &c)
	a.m.inFlight.Dec()
	stop()
	if ctx.Err() != nil {
		// Shutting down: leave the message for another worker.
		return
	}
	if err != nil {
		if !permanent(err) && msg.Deliveries() < a.cfg.MaxDeliver {
			delay := time.Duration(msg.Deliveries()) * 5 * time.Second
			log.Warn("analysis failed, will retry", "err", err, "attempt", msg.Deliveries(), "retry_in", delay)
			msg.Nak(ctx, delay)
			a.m.retries.Inc()
			return
		}
		r = corepipe.NewReport(&c)
		r.Status = corepipe.StatusFailed
		r.Error = err.Error()
	}
	r.Timings.AnalysisMS = time.Since(start).Milliseconds()
	if a.settle(ctx, log, msg, r) {
		a.m.duration.Observe(time.Since(start).Seconds())
	}
}

// QueueMaxDeliver is the delivery limit the crashes consumer needs for an
// analyzer allowing maxDeliver attempts: one more, so that a crash whose
// every attempt killed its worker still gets its failed report.
func QueueMaxDeliver(maxDeliver int) int { return maxDeliver + 1 }

// settle stores and announces r, then acks the crash, and reports whether
// it did; a failure to store leaves the crash queued for another try.
func (a *Analyzer) settle(ctx context.Context, log *slog.Logger, msg corepipe.Message, r *corepipe.Report) bool {
	if err := a.store(ctx, r); err != nil {
		log.Warn("store report, will retry", "err", err)
		msg.Nak(ctx, 5*time.Second)
		a.m.retries.Inc()
		return false
	}
	a.m.reports.WithLabelValues(r.Status).Inc()
	if err := msg.Ack(ctx); err != nil {
		log.Warn("ack crash", "err", err)
	}
	log.Info("report stored", "status", r.Status, "title", r.Title, "error", r.Error, "analysis_ms", r.Timings.AnalysisMS)
	return true
}

// permanent errors give the same answer on every attempt.
func permanent(err error) bool {
	return errors.Is(err, corepipe.ErrInvalid) || errors.Is(err, corepipe.ErrNotFound)
}

func (a *Analyzer) heartbeat(ctx context.Context, msg corepipe.Message) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(a.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				msg.InProgress(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (a *Analyzer) analyse(ctx context.Context, c *corepipe.Crash) (*corepipe.Report, error) {
	if c.Core.Key == "" && c.Termination != nil {
		// An OOM kill never leaves a core: how the container ended is
		// the whole story, and it is worth a report of its own.
		r := corepipe.NewReport(c)
		r.Status = corepipe.StatusAnalyzed
		Enrich(r, c)
		return r, nil
	}
	if c.Core.Key == "" {
		reason := c.Core.Dropped
		if reason == "" {
			reason = "the collector kept no core"
		}
		return nil, fmt.Errorf("%w: no core to analyse: %s", corepipe.ErrNotFound, reason)
	}
	if c.Executable.Key == "" {
		return nil, fmt.Errorf("%w: the executable %s was not captured", corepipe.ErrNotFound, c.Process.Exe)
	}
	dir, err := os.MkdirTemp(a.cfg.TempDir, "corepipe-"+c.ID+"-")
	if err != nil {
		return nil, fmt.Errorf("scratch space: %w", err)
	}
	defer os.RemoveAll(dir)

	corePath := filepath.Join(dir, "core")
	if err := a.fetch(ctx, c.Core.Key, corePath, true); err != nil {
		return nil, fmt.Errorf("fetch core: %w", err)
	}
	exePath := filepath.Join(dir, "executable")
	if err := a.fetch(ctx, c.Executable.Key, exePath, false); err != nil {
		return nil, fmt.Errorf("fetch executable: %w", err)
	}
	found, err := a.cfg.Inspector.Inspect(ctx, corePath, exePath)
	if err != nil {
		return nil, err
	}
	r := corepipe.NewReport(c)
	merge(r, found)
	Enrich(r, c)
	return r, nil
}

// merge copies what the inspector found into a report that already holds
// what the collector and agent knew. The kernel's own account of the signal
// wins over what the core says.
func merge(r, found *corepipe.Report) {
	r.Status = corepipe.StatusAnalyzed
	if r.Signal == nil {
		r.Signal = found.Signal
	}
	r.Fault = found.Fault
	r.Panic = found.Panic
	r.Go = found.Go
	r.Runtime = found.Runtime
	r.CrashingGoroutine = found.CrashingGoroutine
	r.Goroutines = found.Goroutines
	r.GoroutineGroups = found.GoroutineGroups
	r.Threads = found.Threads
	r.Signature = found.Signature
	r.Title = found.Title
	r.Diagnosis = found.Diagnosis
	// The core may be shorter than the collector believed (a disk filled
	// after the manifest was written): the inspection has the last word.
	if found.Artifacts.Core.Truncated {
		r.Artifacts.Core.Truncated = true
	}
}

// fetch copies a blob to path, decompressing it when it is a zstd core.
func (a *Analyzer) fetch(ctx context.Context, key, path string, decompress bool) error {
	rc, err := a.cfg.Blobs.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	blob := &readErr{r: rc}
	var src io.Reader = blob
	if decompress {
		// A small window cap keeps a hostile frame from asking for gigabytes.
		zr, err := zstd.NewReader(blob, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return err
		}
		defer zr.Close()
		src = zr
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		if decompress && blob.err == nil {
			return fmt.Errorf("%w: core %s does not decompress: %v", corepipe.ErrInvalid, key, err)
		}
		return err
	}
	return f.Close()
}

func (a *Analyzer) store(ctx context.Context, r *corepipe.Report) error {
	// A report of 100 000 goroutines runs to hundreds of megabytes of JSON:
	// stream it into the store rather than building it in memory.
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(r.WriteJSON(pw, false)) }()
	err := a.cfg.Blobs.Put(ctx, corepipe.ReportKey(r.ID), pr, -1)
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("store report: %w", err)
	}
	return a.cfg.Queue.PublishReport(ctx, r)
}

// readErr remembers whether reading the blob failed, which may pass, as
// opposed to the bytes being corrupt, which will not.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}
