package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// backfillGroups gives the crashes indexed before groups existed their
// version and workload and folds them into groups, oldest first as a
// rebuild would. It pages by key so that no cursor is open on the table it
// updates, and memory stays at one page whatever the index holds.
func backfillGroups(ctx context.Context, tx *sql.Tx) error {
	const page = 1000
	after := cursorKey{at: -1 << 63}
	for {
		rows, err := tx.QueryContext(ctx, `SELECT id, captured_at, summary FROM crashes
			WHERE (captured_at, id) > (?, ?) ORDER BY captured_at, id LIMIT ?`, after.at, after.key, page)
		if err != nil {
			return fmt.Errorf("backfill groups: %w", err)
		}
		batch, err := scanSummaries(rows)
		if err != nil {
			return fmt.Errorf("backfill groups: %w", err)
		}
		for _, r := range batch {
			if _, err := tx.ExecContext(ctx, `UPDATE crashes SET version = ?, workload = ? WHERE id = ?`,
				r.Version(), r.Workload(), r.ID); err != nil {
				return fmt.Errorf("backfill groups: %s: %w", r.ID, err)
			}
			if r.Signature != "" {
				if err := observe(ctx, tx, r, nil); err != nil {
					return fmt.Errorf("backfill groups: %w", err)
				}
			}
		}
		if len(batch) < page {
			return nil
		}
		last := batch[len(batch)-1]
		after = cursorKey{at: unixNanos(last.CapturedAt), key: last.ID}
	}
}
