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
	"github.com/corepipe/corepipe/internal/settings"
	"github.com/corepipe/corepipe/internal/tick"
)

// Inspector turns a core and its executable into a report, written as JSON
// to report: the finished report of crash c (as Complete makes it), of
// which the analyzer keeps the analysed fields. A report of 100 000
// goroutines is over 100 MiB of JSON, which the analyzer streams from the
// file to the store rather than holding it.
type Inspector interface {
	Inspect(ctx context.Context, c *corepipe.Crash, corePath, exePath string, report *os.File) error
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
	// Durable names the shared work-queue consumer (DefaultDurable when
	// empty).
	Durable string
	// MaxDeliver is how many attempts a crash gets. After the last one a
	// crash that keeps failing for a passing reason gets a failed report;
	// a delivery beyond it (the worker died during the last attempt) writes
	// the failed report without trying again. The queue's own limit must
	// therefore be above it: see QueueMaxDeliver.
	MaxDeliver int
	// TempDir holds the decompressed core while it is inspected.
	TempDir string
	// MaxCoreSize caps a core's decompressed size whatever its manifest
	// declares (0: DefaultMaxCoreSize). A core never expands beyond its
	// declared size either.
	MaxCoreSize int64
	// Debuginfod is asked for the debug files the symbol store lacks; nil
	// asks no external server.
	Debuginfod *Debuginfod
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

// DefaultMaxCoreSize is the largest core an analyzer decompresses unless
// configured otherwise.
const DefaultMaxCoreSize = 64 << 30

// coreSlack is how far a core may run past its declared size: none of the
// collector's cores do, but the bound is the point, not the exact figure.
const coreSlack = 1 << 20

// DefaultDurable is the durable consumer every analyzer shares on the
// crash stream: the one whose backlog says how far behind the analyzers
// are (the Helm chart's KEDA trigger names it).
const DefaultDurable = "analyzer"

// New returns an analyzer with defaults filled in.
func New(cfg Config) *Analyzer {
	settings.Default(&cfg.Workers, 1)
	if cfg.Durable == "" {
		cfg.Durable = DefaultDurable
	}
	settings.Default(&cfg.MaxDeliver, 5)
	settings.Default(&cfg.MaxCoreSize, DefaultMaxCoreSize)
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
		if c.Revision > 0 {
			a.keepPrevious(ctx, log, msg, &c, fmt.Errorf("did not finish in %d attempts", a.cfg.MaxDeliver))
			return
		}
		r := corepipe.NewReport(&c)
		r.Status = corepipe.StatusFailed
		r.Error = fmt.Sprintf("analysis did not finish in %d attempts: the analyzer died or was stopped each time", a.cfg.MaxDeliver)
		a.settle(ctx, log, msg, r, nil)
		return
	}

	stop := a.heartbeat(ctx, msg)
	start := time.Now()
	a.m.inFlight.Inc()
	r, body, err := a.analyse(ctx, &c)
	defer body.Close()
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
		if c.Revision > 0 {
			a.keepPrevious(ctx, log, msg, &c, err)
			return
		}
		r = corepipe.NewReport(&c)
		r.Status = corepipe.StatusFailed
		r.Error = err.Error()
	}
	r.Timings.AnalysisMS = time.Since(start).Milliseconds()
	if a.settle(ctx, log, msg, r, body) {
		a.m.duration.Observe(time.Since(start).Seconds())
	}
}

// keepPrevious settles a re-analysis that failed for good: the report it
// would have replaced was made from the same core (perhaps before the core
// expired, or with fewer symbols), and stays.
func (a *Analyzer) keepPrevious(ctx context.Context, log *slog.Logger, msg corepipe.Message, c *corepipe.Crash, err error) {
	log.Warn("re-analysis failed: the previous report stays", "revision", c.Revision, "err", err)
	a.m.reanalysesFailed.Inc()
	if err := msg.Ack(ctx); err != nil {
		log.Warn("ack crash", "err", err)
	}
}

// QueueMaxDeliver is the delivery limit the crashes consumer needs for an
// analyzer allowing maxDeliver attempts: one more, so that a crash whose
// every attempt killed its worker still gets its failed report.
func QueueMaxDeliver(maxDeliver int) int { return maxDeliver + 1 }

// settle stores and announces r (with body's goroutines, when it has
// them), then acks the crash, and reports whether it did; a failure to
// store leaves the crash queued for another try.
func (a *Analyzer) settle(ctx context.Context, log *slog.Logger, msg corepipe.Message, r *corepipe.Report, body *reportFile) bool {
	// Every report says where its core is, not only those the fleet's
	// core policy left on a node.
	loc := r.Artifacts.Core.Where(time.Now())
	r.Artifacts.Core.Location = &loc
	if err := a.store(ctx, r, body); err != nil {
		log.Warn("store report, will retry", "err", err)
		msg.Nak(ctx, 5*time.Second)
		a.m.retries.Inc()
		return false
	}
	a.m.reports.WithLabelValues(string(r.Status)).Inc()
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
		tick.Every(ctx, a.cfg.Heartbeat, func() { msg.InProgress(ctx) })
	}()
	return func() { cancel(); <-done }
}

// analyse returns the report of c; for a core, the goroutines are in body,
// still in the inspector's report file.
func (a *Analyzer) analyse(ctx context.Context, c *corepipe.Crash) (r *corepipe.Report, body *reportFile, err error) {
	if c.Console != nil && c.Console.Key != "" {
		// A node's kernel died: its console log is the evidence.
		r, err := a.analyseKernel(ctx, c)
		return r, nil, err
	}
	if c.Core.Key == "" && c.Log != nil && c.Log.Key != "" && (c.Termination == nil || c.Termination.CoreID == "") {
		// Most Go crashes in a pod leave no core (PID 1 ignores the
		// runtime's SIGABRT; GOTRACEBACK is rarely crash): the traceback
		// in the log is the evidence.
		r, err := a.analyseLog(ctx, c)
		return r, nil, err
	}
	if c.Core.Key == "" && c.Termination != nil {
		// An OOM kill never leaves a core: how the container ended is
		// the whole story, and it is worth a report of its own.
		r := corepipe.NewReport(c)
		r.Status = corepipe.StatusAnalyzed
		r.Source = corepipe.SourceTermination
		r.Kind = corepipe.KindTermination
		Enrich(r, c)
		return r, nil, nil
	}
	if c.Core.Key == "" && c.NodeReport != "" {
		// The fleet's core policy kept the core on its node, whose agent
		// analysed it there: its report is this crash's.
		return a.nodeReport(ctx, c)
	}
	if c.Core.Key == "" && (c.Core.Dropped != "" || c.Core.Location != nil) {
		return droppedReport(c), nil, nil
	}
	if c.Core.Key == "" {
		return nil, nil, fmt.Errorf("%w: no core to analyse: the collector kept no core", corepipe.ErrNotFound)
	}
	if c.Executable.Key == "" {
		return nil, nil, fmt.Errorf("%w: the executable %s was not captured", corepipe.ErrNotFound, c.Process.Exe)
	}
	dir, err := os.MkdirTemp(a.cfg.TempDir, "corepipe-"+c.ID+"-")
	if err != nil {
		return nil, nil, fmt.Errorf("scratch space: %w", err)
	}
	// The report file stays open past this, for the store: its bytes
	// outlive the directory, whose core is the bulk of the space.
	defer os.RemoveAll(dir)

	corePath := filepath.Join(dir, "core")
	if err := a.fetch(ctx, c.Core.Key, corePath, a.coreLimit(c)); err != nil {
		return nil, nil, fmt.Errorf("fetch core: %w", err)
	}
	exePath := filepath.Join(dir, "executable")
	if err := a.fetch(ctx, c.Executable.Key, exePath, nil); err != nil {
		return nil, nil, fmt.Errorf("fetch executable: %w", err)
	}
	lacks, err := a.fetchDebugInfo(ctx, exePath, dir)
	if err != nil {
		return nil, nil, err
	}
	out, err := os.OpenFile(filepath.Join(dir, "report.json"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("report file for the analysis: %w", err)
	}
	defer func() {
		if err != nil {
			out.Close()
		}
	}()
	if err := a.cfg.Inspector.Inspect(ctx, c, corePath, exePath, out); err != nil {
		return nil, nil, err
	}
	found, body, err := readReport(out)
	if err != nil {
		return nil, nil, fmt.Errorf("analysis wrote no readable report: %w", err)
	}
	// The inspector has already done what Enrich does, with the
	// goroutines this process never holds; what the manifest says is
	// taken from the manifest, not from the child.
	r = corepipe.NewReport(c)
	merge(r, found)
	if lacks != "" {
		r.Lacks = append(r.Lacks, lacks)
	}
	return r, body, nil
}

// Complete is the finished report of crash c, whose core's analysis found
// found: c's own fields, the analysed ones, and what Enrich derives from
// both. With no manifest (c nil) it enriches found alone.
func Complete(found *corepipe.Report, c *corepipe.Crash) *corepipe.Report {
	if c == nil {
		Enrich(found, nil)
		return found
	}
	r := corepipe.NewReport(c)
	merge(r, found)
	Enrich(r, c)
	return r
}

// coreLimit is how far c's core may decompress: to its declared size
// (when the manifest has one) and never beyond the configured maximum.
func (a *Analyzer) coreLimit(c *corepipe.Crash) *coreLimit {
	l := &coreLimit{max: a.cfg.MaxCoreSize, what: fmt.Sprintf("the analyzer's limit of %d MiB", a.cfg.MaxCoreSize>>20)}
	if c.Core.Size > 0 && c.Core.Size+coreSlack < l.max {
		l.max = c.Core.Size + coreSlack
		l.what = fmt.Sprintf("its declared size of %d bytes", c.Core.Size)
	}
	return l
}

// coreLimit bounds a core's decompression.
type coreLimit struct {
	max  int64
	what string
}

// merge copies what the inspector found into a report that already holds
// what the collector and agent knew. The kernel's own account of the signal
// wins over what the core says.
func merge(r, found *corepipe.Report) {
	r.Status = corepipe.StatusAnalyzed
	r.Source = corepipe.SourceCore
	r.Kind = found.Kind
	r.Arch = found.Arch
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

// fetch copies a blob to path; with a limit, the blob is a zstd core,
// decompressed up to that limit.
func (a *Analyzer) fetch(ctx context.Context, key, path string, limit *coreLimit) error {
	rc, err := a.cfg.Blobs.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	return copyOut(rc, key, path, limit)
}

// copyOut copies r to a new file at path; with a limit, r is a zstd core,
// decompressed up to that limit. what names r in errors.
func copyOut(r io.Reader, what, path string, limit *coreLimit) error {
	blob := &readErr{r: r}
	var src io.Reader = blob
	decompress := limit != nil
	if decompress {
		// A small window cap keeps a hostile frame from asking for gigabytes.
		zr, err := zstd.NewReader(blob, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return err
		}
		defer zr.Close()
		// 4 GiB of zero pages compress to under a megabyte: the stored
		// size says nothing about what a core expands to.
		src = io.LimitReader(zr, limit.max+1)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, src)
	if err == nil && decompress && n > limit.max {
		f.Close()
		return fmt.Errorf("%w: core expands beyond %s", corepipe.ErrInvalid, limit.what)
	}
	if err != nil {
		f.Close()
		if decompress && blob.err == nil {
			return fmt.Errorf("%w: core %s does not decompress: %v", corepipe.ErrInvalid, what, err)
		}
		return err
	}
	return f.Close()
}

func (a *Analyzer) store(ctx context.Context, r *corepipe.Report, body *reportFile) error {
	// A report of 100 000 goroutines runs to hundreds of megabytes of JSON:
	// stream it into the store rather than building it in memory.
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeReport(pw, r, body))
	}()
	err := a.cfg.Blobs.Put(ctx, corepipe.ReportKey(r.ID), pr, -1)
	// A store that gave up before the end leaves the writer blocked: the
	// closed pipe ends it, and it must be gone before body is closed.
	pr.CloseWithError(err)
	<-done
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
