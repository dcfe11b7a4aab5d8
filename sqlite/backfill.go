package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/corepipe/corepipe"
)

// backfillGroups gives the crashes indexed before groups existed their
// version and workload and folds them into groups, oldest first as a
// rebuild would.
func backfillGroups(ctx context.Context, tx *sql.Tx) error {
	w := newWriter(ctx, tx, nil, nil)
	err := eachSummary(ctx, tx, func(r *corepipe.Report) error {
		if _, err := tx.ExecContext(ctx, `UPDATE crashes SET version = ?, workload = ? WHERE id = ?`,
			r.Version(), r.Workload(), r.ID); err != nil {
			return fmt.Errorf("%s: %w", r.ID, err)
		}
		if r.Signature != "" {
			return w.observe(r)
		}
		return nil
	})
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return fmt.Errorf("backfill groups: %w", err)
	}
	return nil
}

// eachSummary calls fn for the summary of every indexed crash, oldest
// first. It pages by key so that no cursor is open on the table fn may
// update, and memory stays at one page whatever the index holds.
func eachSummary(ctx context.Context, tx *sql.Tx, fn func(*corepipe.Report) error) error {
	const page = 1000
	after := cursorKey{at: -1 << 63}
	for {
		rows, err := tx.QueryContext(ctx, `SELECT id, captured_at, summary FROM crashes
			WHERE (captured_at, id) > (?, ?) ORDER BY captured_at, id LIMIT ?`, after.at, after.key, page)
		if err != nil {
			return err
		}
		batch, err := scanSummaries(rows)
		if err != nil {
			return err
		}
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(batch) < page {
			return nil
		}
		last := batch[len(batch)-1]
		after = cursorKey{at: unixNanos(last.CapturedAt), key: last.ID}
	}
}
