package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/corepipe/corepipe"
)

// Rebuilder is an index that can be emptied and refilled in one go, so that
// readers never see it half full (sqlite.Index is one).
type Rebuilder interface {
	Rebuild(ctx context.Context, fill func(put func(*corepipe.Report) error) error) error
}

// RebuildStats says what a rebuild did.
type RebuildStats struct {
	Indexed int
	// Skipped counts stored objects that are not readable reports.
	Skipped int
}

// fetchers is how many stored reports a rebuild reads at once. Reading one
// is a round trip to S3, and decoding it costs more than indexing it: both
// overlap the indexing, which stays in key order.
const fetchers = 8

// fetch is one listed key and, once a fetcher has read it, its report.
type fetch struct {
	key string
	out chan fetched
}

type fetched struct {
	r   *corepipe.Report
	err error
}

// Rebuild refills x from every report in the blob store, oldest first:
// report keys sort by crash ID, and IDs sort by capture time, so groups fold
// as they did live. An object that is not a readable report is logged and
// skipped, so that one corrupt file cannot keep the index empty; failing to
// reach the store stops the rebuild and leaves the old index in place.
// Memory is a bounded window of reports read ahead, whatever the store
// holds.
func Rebuild(ctx context.Context, blobs corepipe.BlobStore, x Rebuilder, log *slog.Logger) (RebuildStats, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var st RebuildStats
	err := x.Rebuild(ctx, func(put func(*corepipe.Report) error) error {
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		// order has each listed key's fetch in key order; jobs the same
		// fetches for the fetchers to take.
		order := make(chan fetch, 4*fetchers)
		jobs := make(chan fetch, fetchers)
		var listErr error
		wg.Go(func() {
			defer close(order)
			defer close(jobs)
			listErr = blobs.List(ctx, corepipe.ReportsPrefix, func(key string) error {
				f := fetch{key: key, out: make(chan fetched, 1)}
				for _, ch := range []chan fetch{order, jobs} {
					select {
					case ch <- f:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			})
		})
		for range fetchers {
			wg.Go(func() {
				for f := range jobs {
					r, err := ReadReport(ctx, blobs, f.key)
					f.out <- fetched{r, err}
				}
			})
		}
		for f := range order {
			got := <-f.out
			if errors.Is(got.err, corepipe.ErrInvalid) || errors.Is(got.err, corepipe.ErrNotFound) {
				log.Warn("rebuild: stored report skipped", "key", f.key, "err", got.err)
				st.Skipped++
				continue
			}
			if got.err != nil {
				return got.err
			}
			if err := put(got.r); err != nil {
				return err
			}
			st.Indexed++
			if st.Indexed%10000 == 0 {
				log.Info("rebuild: reports indexed", "count", st.Indexed)
			}
		}
		// order is closed: the lister has returned.
		return listErr
	})
	if err != nil {
		return st, fmt.Errorf("rebuild index from the blob store: %w", err)
	}
	return st, nil
}

// ReadReport reads the report at key, checking that it is the report of
// the crash the key names. ErrInvalid means the object is not a report of
// ours; ErrNotFound that there is none (it went away since it was listed).
func ReadReport(ctx context.Context, blobs corepipe.BlobStore, key string) (*corepipe.Report, error) {
	id, ok := strings.CutSuffix(strings.TrimPrefix(key, corepipe.ReportsPrefix), ".json")
	if !ok || !corepipe.ValidID(id) {
		return nil, fmt.Errorf("%w: %s is not a report key", corepipe.ErrInvalid, key)
	}
	rc, err := blobs.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	// A read that fails is the store's problem, not the object's: only
	// the latter is ErrInvalid.
	r, err := corepipe.ReadStored(rc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if r.ID != id {
		return nil, fmt.Errorf("%w: %s holds the report of %q", corepipe.ErrInvalid, key, r.ID)
	}
	return r, nil
}
