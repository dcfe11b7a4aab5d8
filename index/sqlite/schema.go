package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order, each once; PRAGMA user_version records how
// many have run. Append new steps (groups, …), never edit a released one.
var migrations = []string{
	`CREATE TABLE crashes (
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
	CREATE INDEX crashes_by_signature ON crashes (signature, captured_at, id);`,
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
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", i+1, err)
		}
	}
	// PRAGMA takes no bound parameters.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("migrate: write schema version: %w", err)
	}
	return tx.Commit()
}
