package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

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

// Rebuild refills x from every report in the blob store, oldest first:
// report keys sort by crash ID, and IDs sort by capture time, so groups fold
// as they did live. An object that is not a readable report is logged and
// skipped, so that one corrupt file cannot keep the index empty; failing to
// reach the store stops the rebuild and leaves the old index in place.
// Memory is one report at a time, whatever the store holds.
func Rebuild(ctx context.Context, blobs corepipe.BlobStore, x Rebuilder, log *slog.Logger) (RebuildStats, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var st RebuildStats
	err := x.Rebuild(ctx, func(put func(*corepipe.Report) error) error {
		return blobs.List(ctx, corepipe.ReportsPrefix, func(key string) error {
			r, err := readReport(ctx, blobs, key)
			if errors.Is(err, corepipe.ErrInvalid) || errors.Is(err, corepipe.ErrNotFound) {
				log.Warn("rebuild: stored report skipped", "key", key, "err", err)
				st.Skipped++
				return nil
			}
			if err != nil {
				return err
			}
			if err := put(r); err != nil {
				return err
			}
			st.Indexed++
			if st.Indexed%10000 == 0 {
				log.Info("rebuild: reports indexed", "count", st.Indexed)
			}
			return nil
		})
	})
	if err != nil {
		return st, fmt.Errorf("rebuild index from the blob store: %w", err)
	}
	return st, nil
}

// readReport reads the report at key. ErrInvalid means the object is not a
// report of ours; ErrNotFound that it went away since it was listed.
func readReport(ctx context.Context, blobs corepipe.BlobStore, key string) (*corepipe.Report, error) {
	id, ok := strings.CutSuffix(strings.TrimPrefix(key, corepipe.ReportsPrefix), ".json")
	if !ok || !corepipe.ValidID(id) {
		return nil, fmt.Errorf("%w: %s is not a report key", corepipe.ErrInvalid, key)
	}
	rc, err := blobs.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	var r corepipe.Report
	if err := json.NewDecoder(rc).Decode(&r); err != nil {
		var (
			syntax *json.SyntaxError
			typ    *json.UnmarshalTypeError
		)
		// A read that fails is the store's problem, not the object's.
		if errors.As(err, &syntax) || errors.As(err, &typ) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: decode %s: %v", corepipe.ErrInvalid, key, err)
		}
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if r.ID != id {
		return nil, fmt.Errorf("%w: %s holds the report of %q", corepipe.ErrInvalid, key, r.ID)
	}
	return &r, nil
}
