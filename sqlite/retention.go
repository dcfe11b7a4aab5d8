package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/corepipe/corepipe"
)

// What retention asks of the index (issue 16): which cores and reports are
// past their time, whether an executable is still needed, and to forget a
// crash whose report is deleted.

const (
	coreKeyJSON  = `coalesce(json_extract(CAST(summary AS TEXT), '$.artifacts.core.key'), '')`
	exeKeyJSON   = `coalesce(json_extract(CAST(summary AS TEXT), '$.artifacts.executable.key'), '')`
	coreAtJSON   = `coalesce(json_extract(CAST(summary AS TEXT), '$.artifacts.core.location.state'), '')`
	maxSweepRows = 10000
)

// ExpiringCores returns the IDs of at most limit crashes captured before
// before whose core is stored, oldest first, leaving out each group's first
// keep and latest keep stored cores: the exemplars a debugger still finds.
// It ranks every stored core of the index (through the partial index of
// crashes with one), so a pass costs what the cores kept number, not the
// reports.
func (x *Index) ExpiringCores(ctx context.Context, before time.Time, keep, limit int) ([]string, error) {
	if keep < 0 || limit <= 0 || limit > maxSweepRows {
		return nil, fmt.Errorf("%w: expiring cores: keep %d, limit %d", corepipe.ErrInvalid, keep, limit)
	}
	return x.ids(ctx, `
		SELECT id FROM (
			SELECT id, captured_at,
				row_number() OVER (PARTITION BY signature ORDER BY captured_at, id) AS first_n,
				row_number() OVER (PARTITION BY signature ORDER BY captured_at DESC, id DESC) AS last_n
			FROM crashes WHERE core_stored = 1
		) WHERE captured_at < ? AND first_n > ? AND last_n > ?
		ORDER BY captured_at, id LIMIT ?`, unixNanos(before), keep, keep, limit)
}

// ExpiringReports returns the IDs of at most limit crashes captured before
// before, oldest first.
func (x *Index) ExpiringReports(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if limit <= 0 || limit > maxSweepRows {
		return nil, fmt.Errorf("%w: expiring reports: limit %d", corepipe.ErrInvalid, limit)
	}
	return x.ids(ctx, `SELECT id FROM crashes WHERE captured_at < ? ORDER BY captured_at, id LIMIT ?`, unixNanos(before), limit)
}

func (x *Index) ids(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := x.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("index retention: %w", FormatError(err))
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("index retention: %w", FormatError(err))
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index retention: %w", FormatError(err))
	}
	return ids, nil
}

// ExecutableNeeded reports whether a kept core needs the executable e: a
// crash with e whose core is stored, or still on its node, where a debugger
// may ask for it and then needs the executable too.
func (x *Index) ExecutableNeeded(ctx context.Context, e corepipe.ExeArtifact) (bool, error) {
	if e.Key == "" {
		return false, nil
	}
	// Crashes of one build share its executable: the build ID's index
	// narrows the scan when the executable has one.
	narrow, args := "", []any{e.Key}
	switch {
	case e.BuildID != "":
		narrow, args = "build_id = ? AND ", []any{e.BuildID, e.Key}
	case e.GoBuildID != "":
		narrow, args = "go_build_id = ? AND ", []any{e.GoBuildID, e.Key}
	}
	var one int
	err := x.db.QueryRowContext(ctx, `SELECT 1 FROM crashes WHERE `+narrow+exeKeyJSON+` = ?
		AND (`+coreKeyJSON+` <> '' OR `+coreAtJSON+` = '`+corepipe.CoreOnNode+`') LIMIT 1`, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("index: is executable %s needed: %w", e.Key, FormatError(err))
	}
	return true, nil
}

// Delete forgets crash id, whose report retention deleted, and folds its
// group again without it (a group left with no crash goes; its triage
// stays). An unknown id is no error: a sweep stopped half way runs again.
func (x *Index) Delete(ctx context.Context, id string) error {
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index delete: %w", FormatError(err))
	}
	defer tx.Rollback()
	var (
		rowid     int64
		signature string
	)
	err = tx.QueryRowContext(ctx, `SELECT rowid, signature FROM crashes WHERE id = ?`, id).Scan(&rowid, &signature)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("index delete %s: %w", id, FormatError(err))
	}
	for _, q := range []string{`DELETE FROM crashes_text WHERE rowid = ?`, `DELETE FROM crashes WHERE rowid = ?`} {
		if _, err := tx.ExecContext(ctx, q, rowid); err != nil {
			return fmt.Errorf("index delete %s: %w", id, FormatError(err))
		}
	}
	if signature != "" {
		if err := regroup(ctx, tx, signature, x.owners.Load()); err != nil {
			return fmt.Errorf("index delete %s: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index delete %s: commit: %w", id, FormatError(err))
	}
	return nil
}
