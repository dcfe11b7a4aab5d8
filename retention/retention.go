// Package retention expires cores and reports on their own clocks (issue
// 16): a sweeper deletes stored cores past --retain-cores, except each
// group's first and latest K, and reports past --retain-reports with every
// blob of their crash; an executable goes when no kept core needs it. A
// swept core's report says where the core went (expired, and when), in the
// blob store and in the index alike, so nothing links to a deleted blob and
// a rebuild of the index finds what the sweep left.
package retention

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/index"
)

// Index is what the sweeper asks of the index (sqlite.Index is one).
type Index interface {
	Crash(ctx context.Context, id string) (*corepipe.Report, error)
	Upsert(ctx context.Context, r *corepipe.Report) error
	ExpiringCores(ctx context.Context, before time.Time, keep, limit int) ([]string, error)
	ExpiringReports(ctx context.Context, before time.Time, limit int) ([]string, error)
	ExecutableNeeded(ctx context.Context, e corepipe.ExeArtifact) (bool, error)
	Delete(ctx context.Context, id string) error
}

// Lease says whether this process is the cluster's sweeper: Hold takes or
// renews it and reports whether it is ours. A nil Lease means a process
// alone, which always sweeps.
type Lease interface {
	Hold(ctx context.Context) (bool, error)
}

// Publisher announces a changed report (corepipe.Queue's PublishReport).
type Publisher interface {
	PublishReport(ctx context.Context, r *corepipe.Report) error
}

// Defaults of Config.
const (
	DefaultKeep     = 2
	DefaultBatch    = 500
	DefaultInterval = 5 * time.Minute
)

// Config is a sweeper's. Zero Cores or Reports keeps them forever.
type Config struct {
	Blobs corepipe.BlobDeleter
	Index Index
	// Cores and Reports are how long stored cores and reports are kept.
	Cores, Reports time.Duration
	// Keep is how many of each group's first and of its latest stored
	// cores are kept whatever their age; negative is an error, 0 none.
	Keep int
	// Batch bounds the cores and the reports one pass deletes.
	Batch int
	// Interval is the time between passes of Run.
	Interval time.Duration
	Lease    Lease
	// Publish, when set, is where an expired core's report is announced,
	// so that the indexes of other API replicas, which follow the reports
	// stream, say so too.
	Publish Publisher
	Now     func() time.Time
	Log     *slog.Logger
}

// Sweeper deletes what is past its time.
type Sweeper struct{ cfg Config }

// New checks cfg and fills its defaults (Batch, Interval, Now, Log; Keep
// is taken as given).
func New(cfg Config) (*Sweeper, error) {
	switch {
	case cfg.Blobs == nil || cfg.Index == nil:
		return nil, fmt.Errorf("%w: retention needs a blob store that deletes and an index", corepipe.ErrInvalid)
	case cfg.Cores < 0 || cfg.Reports < 0:
		return nil, fmt.Errorf("%w: retention of cores %v, reports %v: want 0 (forever) or a positive duration", corepipe.ErrInvalid, cfg.Cores, cfg.Reports)
	case cfg.Keep < 0:
		return nil, fmt.Errorf("%w: --keep-exemplars %d: want 0 or more", corepipe.ErrInvalid, cfg.Keep)
	case cfg.Batch < 0 || cfg.Interval < 0:
		return nil, fmt.Errorf("%w: retention batch %d, interval %v: want positive", corepipe.ErrInvalid, cfg.Batch, cfg.Interval)
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Sweeper{cfg: cfg}, nil
}

// Enabled reports whether anything expires at all.
func (s *Sweeper) Enabled() bool { return s.cfg.Cores > 0 || s.cfg.Reports > 0 }

// Stats says what a pass did.
type Stats struct {
	// Swept is false when another process holds the lease.
	Swept                       bool
	Cores, Reports, Executables int
	MoreCores, MoreReports      bool
}

// Run sweeps every Interval until ctx is done. A failed pass is logged and
// the next one tries again.
func (s *Sweeper) Run(ctx context.Context) error {
	if !s.Enabled() {
		return nil
	}
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		st, err := s.Sweep(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.cfg.Log.Error("retention: sweep failed", "err", err)
		case st.Swept && st.Cores+st.Reports+st.Executables > 0:
			s.cfg.Log.Info("retention: swept", "cores", st.Cores, "reports", st.Reports, "executables", st.Executables,
				"more", st.MoreCores || st.MoreReports)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sweep runs one pass if this process holds the lease.
func (s *Sweeper) Sweep(ctx context.Context) (Stats, error) {
	if s.cfg.Lease != nil {
		ours, err := s.cfg.Lease.Hold(ctx)
		if err != nil {
			return Stats{}, fmt.Errorf("retention: lease: %w", err)
		}
		if !ours {
			return Stats{}, nil
		}
	}
	return s.Pass(ctx)
}

// Pass deletes at most Batch cores and Batch reports past their time, the
// oldest first, and the executables they leave unneeded.
func (s *Sweeper) Pass(ctx context.Context) (Stats, error) {
	st := Stats{Swept: true}
	now := s.cfg.Now()
	exes := map[string]corepipe.ExeArtifact{}
	if s.cfg.Reports > 0 {
		ids, err := s.cfg.Index.ExpiringReports(ctx, now.Add(-s.cfg.Reports), s.cfg.Batch)
		if err != nil {
			return st, fmt.Errorf("retention: %w", err)
		}
		st.MoreReports = len(ids) == s.cfg.Batch
		st.Reports, err = s.each(ctx, ids, exes, func(r *corepipe.Report) error { return s.deleteReport(ctx, r) })
		if err != nil {
			return st, err
		}
	}
	if s.cfg.Cores > 0 {
		ids, err := s.cfg.Index.ExpiringCores(ctx, now.Add(-s.cfg.Cores), s.cfg.Keep, s.cfg.Batch)
		if err != nil {
			return st, fmt.Errorf("retention: %w", err)
		}
		st.MoreCores = len(ids) == s.cfg.Batch
		st.Cores, err = s.each(ctx, ids, exes, func(r *corepipe.Report) error { return s.expireCore(ctx, r, now) })
		if err != nil {
			return st, err
		}
	}
	delete(exes, "")
	for key, e := range exes {
		needed, err := s.cfg.Index.ExecutableNeeded(ctx, e)
		if err != nil {
			return st, fmt.Errorf("retention: %w", err)
		}
		if needed {
			continue
		}
		if err := s.cfg.Blobs.Delete(ctx, key); err != nil {
			return st, fmt.Errorf("retention: delete executable %s: %w", key, err)
		}
		s.cfg.Log.Info("retention: executable deleted: no kept core needs it", "key", key)
		st.Executables++
	}
	return st, nil
}

// each runs expire on the report of every crash of ids, in order, noting in
// exes the executables they name, and counts the reports it was done to.
func (s *Sweeper) each(ctx context.Context, ids []string, exes map[string]corepipe.ExeArtifact, expire func(*corepipe.Report) error) (int, error) {
	for i, id := range ids {
		r, err := s.report(ctx, id)
		if err != nil {
			return i, err
		}
		if err := expire(r); err != nil {
			return i, err
		}
		exes[r.Artifacts.Executable.Key] = r.Artifacts.Executable
	}
	return len(ids), nil
}

// expireCore says in the report that its core expired, in the blob store,
// on the reports stream and in the index, and only then deletes the core: a reader sees the
// core stored or expired, never a link to nothing. A pass stopped between
// the two leaves a core no report names, never a report naming no core.
func (s *Sweeper) expireCore(ctx context.Context, r *corepipe.Report, now time.Time) error {
	key := r.Artifacts.Core.Key
	r.Artifacts.Core.Key = ""
	r.Artifacts.Core.Location = &corepipe.CoreLocation{
		State:  corepipe.CoreExpired,
		Until:  now.UTC(),
		Reason: fmt.Sprintf("retention keeps cores %s, and it was not one of its group's exemplars", formatDuration(s.cfg.Cores)),
	}
	if err := s.putReport(ctx, r); err != nil {
		return err
	}
	if s.cfg.Publish != nil {
		if err := s.cfg.Publish.PublishReport(ctx, r); err != nil {
			return fmt.Errorf("retention: crash %s: announce the expired core: %w", r.ID, err)
		}
	}
	if err := s.cfg.Index.Upsert(ctx, r); err != nil {
		return fmt.Errorf("retention: crash %s: %w", r.ID, err)
	}
	if err := s.cfg.Blobs.Delete(ctx, key); err != nil {
		return fmt.Errorf("retention: crash %s: delete core: %w", r.ID, err)
	}
	s.cfg.Log.Info("retention: core expired", "crash", r.ID, "key", key)
	return nil
}

// deleteReport deletes a crash's blobs, its report last of them, announces
// on the reports stream that it is gone (every replica's index forgets it),
// and then forgets it in its own index: until the index does, the API says
// from the index that the report is not in the blob store, and a rebuild
// never finds it again.
func (s *Sweeper) deleteReport(ctx context.Context, r *corepipe.Report) error {
	c := &corepipe.Crash{ID: r.ID, CapturedAt: r.CapturedAt, Node: r.Node}
	keys := []string{r.Artifacts.Core.Key, corepipe.CoreKey(c), corepipe.ManifestKey(c), corepipe.NodeReportKey(c),
		corepipe.LogKey(c), corepipe.ConsoleKey(c), corepipe.ReportKey(r.ID)}
	for _, key := range keys {
		if key == "" {
			continue
		}
		if err := s.cfg.Blobs.Delete(ctx, key); err != nil {
			return fmt.Errorf("retention: crash %s: delete %s: %w", r.ID, key, err)
		}
	}
	if s.cfg.Publish != nil {
		gone := &corepipe.Report{Schema: corepipe.ReportSchema, ID: r.ID, Status: corepipe.StatusDeleted, CapturedAt: r.CapturedAt, Node: r.Node}
		if err := s.cfg.Publish.PublishReport(ctx, gone); err != nil {
			return fmt.Errorf("retention: crash %s: announce the deleted report: %w", r.ID, err)
		}
	}
	if err := s.cfg.Index.Delete(ctx, r.ID); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	s.cfg.Log.Info("retention: report deleted", "crash", r.ID)
	return nil
}

// report reads the full report of id from the blob store, or takes the
// index's summary when the store has none (analysis lost): either way the
// sweep moves on past it.
func (s *Sweeper) report(ctx context.Context, id string) (*corepipe.Report, error) {
	r, err := index.ReadReport(ctx, s.cfg.Blobs, corepipe.ReportKey(id))
	if errors.Is(err, corepipe.ErrNotFound) {
		sum, err := s.cfg.Index.Crash(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("retention: crash %s: %w", id, err)
		}
		return sum, nil
	}
	if err != nil {
		return nil, fmt.Errorf("retention: crash %s: %w", id, err)
	}
	return r, nil
}

// putReport streams r back into the store: a report of many goroutines is
// large, and only the decoded report is held, not its JSON as well.
func (s *Sweeper) putReport(ctx context.Context, r *corepipe.Report) error {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(r.WriteStored(pw))
	}()
	err := s.cfg.Blobs.Put(ctx, corepipe.ReportKey(r.ID), pr, -1)
	pr.CloseWithError(err)
	<-done
	if err != nil {
		return fmt.Errorf("retention: crash %s: store report: %w", r.ID, err)
	}
	return nil
}

// formatDuration says whole days as days ("30d"), the unit retention is
// thought in.
func formatDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
