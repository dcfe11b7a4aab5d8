// Package sqlite is corepipe's SQLite adapter, the only package that talks to
// the driver: the report index (Index) and the notifier's memory
// (NotifyStore), each in its own file, on one DB type with versioned,
// embedded migrations and one translation of driver errors into the
// domain's (FormatError).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/corepipe/corepipe"
)

// busyTimeout is how long a statement waits for another connection's write
// lock before failing: long enough to ride out a burst of upserts, short
// enough that a wedged writer surfaces as ErrUnavailable instead of a hung
// HTTP request.
const busyTimeout = 5 * time.Second

// migrationFS holds one folder of migrations per kind of database file,
// applied in the order of their numbers, each once. Append new files, never
// edit a released one.
//
//go:embed migration/*/*.sql
var migrationFS embed.FS

// fills are the Go steps of a migration, run in the same transaction after
// the SQL of every migration being applied, for what SQL cannot compute (a
// report's version, a group's fold, a crash's searchable text).
var fills = map[string]func(ctx context.Context, tx *sql.Tx) error{
	"index/0002_groups.sql": backfillGroups,
	"index/0003_triage.sql": backfillText,
}

// DB is one SQLite file with its schema up to date.
type DB struct {
	*sql.DB
	// kind names the file's migrations folder: "index" or "notify".
	kind string
}

// config is how a kind of file is opened.
type config struct {
	kind string
	// synchronous is the pragma's value: FULL when a commit must be on disk
	// before a message is acked, NORMAL when the file can be rebuilt.
	synchronous string
	// maxConns bounds the pool; 0 leaves it open.
	maxConns int
	// cacheKiB is each connection's page cache; 0 leaves SQLite's 2 MiB.
	cacheKiB int
	// checkpointPages is how large the WAL grows before a commit copies it
	// into the file; 0 leaves SQLite's 1000 pages.
	checkpointPages int
}

// openDB opens or creates the file at path and migrates it.
func openDB(ctx context.Context, path string, c config) (*DB, error) {
	// The driver cuts the DSN at the first '?' to find its parameters, so a
	// path containing one would silently open a different file.
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("%w: path contains '?'", corepipe.ErrInvalid)
	}
	// Pragmas go in the DSN so that every pooled connection gets them, not
	// only the first. _txlock=immediate takes the write lock at BEGIN: a
	// transaction that reads then writes never fails half-way on a lock.
	dsn := path + fmt.Sprintf("?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(%s)&_txlock=immediate",
		busyTimeout.Milliseconds(), c.synchronous)
	if c.cacheKiB > 0 {
		dsn += fmt.Sprintf("&_pragma=cache_size(-%d)", c.cacheKiB)
	}
	if c.checkpointPages > 0 {
		dsn += fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)", c.checkpointPages)
	}
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	if c.maxConns > 0 {
		sdb.SetMaxOpenConns(c.maxConns)
	}
	db := &DB{DB: sdb, kind: c.kind}
	if err := db.migrate(ctx); err != nil {
		sdb.Close()
		return nil, FormatError(err)
	}
	return db, nil
}

// migration is one file of migrationFS.
type migration struct {
	version int
	name    string // kind/NNNN_what.sql
}

func migrations(kind string) ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migration/"+kind+"/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, n := range names {
		base := path.Base(n)
		num, _, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if err != nil || v != len(out)+1 {
			return nil, fmt.Errorf("migration %s: want number %04d", n, len(out)+1)
		}
		out = append(out, migration{version: v, name: kind + "/" + base})
	}
	return out, nil
}

// migrate applies the migrations the file has not had, in one transaction,
// and records each in the migrations table.
//
// Index files written before that table existed counted their migrations in
// PRAGMA user_version; those are recorded as applied. The pragma is still
// kept equal to the newest version, so that an older corepipe refuses a file
// that is newer than it instead of migrating it again.
func (db *DB) migrate(ctx context.Context) error {
	all, err := migrations(db.kind)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if db.upToDate(ctx, len(all)) {
		return nil
	}
	// _txlock=immediate: two processes opening a new file cannot both find
	// it unmigrated.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL -- unix nanoseconds
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied, err := appliedVersions(ctx, tx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if len(applied) == 0 {
		var legacy int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&legacy); err != nil {
			return fmt.Errorf("migrate: read schema version: %w", err)
		}
		if legacy > len(all) {
			return fmt.Errorf("migrate: schema version %d is newer than this program's %d", legacy, len(all))
		}
		for _, m := range all[:legacy] {
			if err := record(ctx, tx, m); err != nil {
				return err
			}
			applied = append(applied, m.version)
		}
	}
	if n := len(applied); n > 0 && applied[n-1] > len(all) {
		return fmt.Errorf("migrate: schema version %d is newer than this program's %d", applied[n-1], len(all))
	}
	var filling []migration
	for _, m := range all {
		if slices.Contains(applied, m.version) {
			continue
		}
		body, err := migrationFS.ReadFile("migration/" + m.name)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return fmt.Errorf("migrate to version %d (%s): %w", m.version, m.name, err)
		}
		if fills[m.name] != nil {
			filling = append(filling, m)
		}
		if err := record(ctx, tx, m); err != nil {
			return err
		}
	}
	// The fills are today's Go code, which reads and writes today's
	// schema: they run once every migration's SQL has.
	for _, m := range filling {
		if err := fills[m.name](ctx, tx); err != nil {
			return fmt.Errorf("migrate to version %d (%s): %w", m.version, m.name, err)
		}
	}
	// PRAGMA takes no bound parameters.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(all))); err != nil {
		return fmt.Errorf("migrate: write schema version: %w", err)
	}
	return tx.Commit()
}

// upToDate says, without taking the write lock, whether the file has had
// every one of the n migrations: a process opening a file that another is
// writing (the notifier beside an API that rebuilds its index in one long
// transaction) does not wait for that writer, and fail when it waits too
// long. Anything else, the legacy files included, takes migrate's way.
func (db *DB) upToDate(ctx context.Context, n int) bool {
	var version, count, newest int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != n {
		return false
	}
	err := db.QueryRowContext(ctx, `SELECT count(*), coalesce(max(version), 0) FROM migrations`).Scan(&count, &newest)
	return err == nil && count == n && newest == n
}

// appliedVersions lists the recorded migrations, ascending.
func appliedVersions(ctx context.Context, tx *sql.Tx) ([]int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT version FROM migrations ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func record(ctx context.Context, tx *sql.Tx, m migration) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.version, m.name, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("migrate: record version %d: %w", m.version, err)
	}
	return nil
}

// FormatError translates a driver or database/sql error into the domain's:
// a lock held too long (SQLITE_BUSY, SQLITE_LOCKED) is corepipe.ErrUnavailable,
// a missing row corepipe.ErrNotFound, each with a message safe for a viewer
// and the driver's text as the operator's detail. Other errors pass unchanged.
func FormatError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return &corepipe.Error{Code: corepipe.ENOTFOUND, Message: "not found", Err: err}
	}
	if se, ok := errors.AsType[*sqlite.Error](err); ok {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return &corepipe.Error{Code: corepipe.EUNAVAILABLE, Message: "the database is busy", Err: err}
		}
	}
	return err
}
