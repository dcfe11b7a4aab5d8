package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migration is one step of the schema: SQL, then optionally Go for what SQL
// cannot compute (a report's version, a group's fold).
type migration struct {
	sql  string
	fill func(ctx context.Context, tx *sql.Tx) error
}

// migrations are applied in order, each once; PRAGMA user_version records how
// many have run. Append new steps, never edit a released one.
var migrations = []migration{
	{sql: `CREATE TABLE crashes (
		id          TEXT PRIMARY KEY,
		captured_at INTEGER NOT NULL, -- unix nanoseconds
		node        TEXT NOT NULL,
		namespace   TEXT NOT NULL,
		pod         TEXT NOT NULL,
		exe         TEXT NOT NULL,
		exe_base    TEXT NOT NULL, -- base name of exe, so a filter needs no LIKE
		signature   TEXT NOT NULL,
		status      TEXT NOT NULL,
		summary     BLOB NOT NULL  -- JSON of Report.Summary()
	);
	-- The list is always newest first; the filtered lists the UI links to
	-- most (one node, one bug) get their own keyset-ordered indexes.
	CREATE INDEX crashes_by_time ON crashes (captured_at, id);
	CREATE INDEX crashes_by_node ON crashes (node, captured_at, id);
	CREATE INDEX crashes_by_signature ON crashes (signature, captured_at, id);`},

	// Groups. A crash row's signature is the group it is counted in: Upsert
	// changes both in one transaction, so re-indexing a report never counts
	// it twice, and a report re-analysed under a new signature moves.
	{sql: `ALTER TABLE crashes ADD COLUMN version TEXT NOT NULL DEFAULT '';  -- Report.Version()
	ALTER TABLE crashes ADD COLUMN workload TEXT NOT NULL DEFAULT ''; -- Report.Workload()
	CREATE TABLE groups (
		signature     TEXT PRIMARY KEY,
		title         TEXT NOT NULL,
		count         INTEGER NOT NULL,
		first_seen    INTEGER NOT NULL, -- unix nanoseconds
		last_seen     INTEGER NOT NULL,
		first_version TEXT NOT NULL,
		last_version  TEXT NOT NULL,
		status        TEXT NOT NULL,
		nodes         TEXT NOT NULL, -- JSON array, bounded by corepipe.Group
		workloads     TEXT NOT NULL  -- JSON array, bounded by corepipe.Group
	);
	CREATE INDEX groups_by_activity ON groups (last_seen, signature);
	-- A group's page breaks its crashes down by build and by workload:
	-- covering indexes answer that without reading the rows.
	CREATE INDEX crashes_by_version ON crashes (signature, version, captured_at);
	CREATE INDEX crashes_by_workload ON crashes (signature, workload, captured_at);
	-- Every filter of the list has its keyset-ordered index: without one,
	-- a filter that matches few crashes (one pod, a rare executable) scans
	-- the whole table to fill a page.
	CREATE INDEX crashes_by_namespace ON crashes (namespace, captured_at, id);
	CREATE INDEX crashes_by_pod ON crashes (pod, captured_at, id);
	CREATE INDEX crashes_by_exe ON crashes (exe, captured_at, id);
	CREATE INDEX crashes_by_exe_base ON crashes (exe_base, captured_at, id);
	CREATE INDEX crashes_by_status ON crashes (status, captured_at, id);`,
		fill: backfillGroups},
}

func migrate(ctx context.Context, db *sql.DB) error {
	// _txlock=immediate takes the write lock at BEGIN, so two processes
	// opening a new file cannot both read version 0 and both migrate.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("migrate: schema version %d is newer than this program's %d", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i].sql); err != nil {
			return fmt.Errorf("migrate to version %d: %w", i+1, err)
		}
		if fill := migrations[i].fill; fill != nil {
			if err := fill(ctx, tx); err != nil {
				return fmt.Errorf("migrate to version %d: %w", i+1, err)
			}
		}
	}
	// PRAGMA takes no bound parameters.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("migrate: write schema version: %w", err)
	}
	return tx.Commit()
}

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
				if err := observe(ctx, tx, r); err != nil {
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
