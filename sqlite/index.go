// The report index: one row per crash with the columns the API filters on
// and the report summary as JSON, and one row per crash group kept up to
// date as reports arrive. The index holds nothing that is not also in the
// blob store, so it can always be rebuilt from the stored reports.

package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/corepipe/corepipe"
)

// Page sizes of Crashes.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// indexCacheKiB is each connection's page cache. Writing a crash touches
// a page of every index on crashes, at as many places as the index has
// keys (nodes, groups, pods): SQLite's default 2 MiB thrashes long before
// ten million crashes, and the writer reads back the pages it just wrote.
const indexCacheKiB = 64 << 10

// indexCheckpointPages is how large the WAL grows (4 KiB pages) before a
// commit checkpoints it. Each checkpoint copies the pages and syncs the
// file: once every few thousand reports, not on every commit of a batch,
// which the default 1000 pages (4 MiB) meant. A page written again before
// the checkpoint is copied once: 256 MiB, against 64 MiB, took ingest on
// ten million crashes from 3 500-4 800 to 5 200-5 500 reports/s. The WAL
// is that much more disk.
const indexCheckpointPages = 64 << 10

// Index is a corepipe.Index stored in one SQLite file. It is safe for
// concurrent use, and several processes may open the same file.
type Index struct {
	db *DB
	// stmts are the writer's statements, prepared once.
	stmts statements
	// owners name the owner of groups nobody assigned; nil names none.
	owners atomic.Pointer[corepipe.OwnerRules]
}

var _ corepipe.Index = (*Index)(nil)

// Open opens or creates the index at path and brings its schema up to date.
func Open(path string) (*Index, error) {
	// synchronous=NORMAL is durable enough in WAL mode for an index that can
	// be rebuilt, and avoids an fsync per upsert.
	db, err := openDB(context.Background(), path, config{kind: "index", synchronous: "NORMAL", cacheKiB: indexCacheKiB, checkpointPages: indexCheckpointPages})
	if err != nil {
		return nil, fmt.Errorf("open index %q: %w", path, err)
	}
	x := &Index{db: db}
	x.stmts.db = db.DB
	return x, nil
}

// Close releases the database. Queries in flight fail afterwards.
func (x *Index) Close() error {
	x.stmts.close()
	if err := x.db.Close(); err != nil {
		return fmt.Errorf("close index: %w", err)
	}
	return nil
}

// Upsert records or replaces the summary of r and counts it in its group,
// in one transaction. Re-indexing a report (a redelivery, a restart, a
// rebuild) counts it once; a report re-analysed under another signature
// moves to that group. A pending report never replaces an analyzed or failed
// one: it is older news that arrived late.
func (x *Index) Upsert(ctx context.Context, r *corepipe.Report) error {
	return x.UpsertBatch(ctx, []*corepipe.Report{r})
}

// UpsertBatch upserts the reports of rs, in order, in one transaction: all
// of them are indexed or none is. A batch pays for one commit, prepares
// each statement once, and loads and saves each group once however many of
// its crashes it holds; the index ends as Upsert of each in turn leaves it.
func (x *Index) UpsertBatch(ctx context.Context, rs []*corepipe.Report) error {
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index upsert: %w", FormatError(err))
	}
	defer tx.Rollback()
	w := newWriter(ctx, tx, &x.stmts, x.owners.Load())
	for _, r := range rs {
		if err := w.upsert(r); err != nil {
			return err
		}
	}
	if err := w.flush(); err != nil {
		return fmt.Errorf("index upsert: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index upsert of %d reports: commit: %w", len(rs), FormatError(err))
	}
	return nil
}

// Rebuild empties the index and refills it with the reports that fill puts,
// in one transaction: readers keep seeing the old index until the new one
// is complete, and a failed rebuild leaves the old one in place. Reports
// should come oldest first, so that groups fold as they did live.
func (x *Index) Rebuild(ctx context.Context, fill func(put func(*corepipe.Report) error) error) error {
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index rebuild: %w", FormatError(err))
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM crashes; DELETE FROM groups; DELETE FROM crashes_text;`); err != nil {
		return fmt.Errorf("index rebuild: empty: %w", FormatError(err))
	}
	w := newWriter(ctx, tx, &x.stmts, x.owners.Load())
	if err := fill(w.upsert); err != nil {
		return fmt.Errorf("index rebuild: %w", err)
	}
	if err := w.flush(); err != nil {
		return fmt.Errorf("index rebuild: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index rebuild: commit: %w", FormatError(err))
	}
	return nil
}

// maxFolding bounds the groups a writer folds in memory before it saves
// them: a rebuild of a fleet's year meets every group there is.
const maxFolding = 4096

// writer indexes reports within one transaction, which is what makes a
// batch cheap: each statement is prepared once, not once a report, and a
// group is loaded once, folded in memory by every crash of it that comes,
// and saved once at flush, instead of being decoded and encoded per crash.
// Folding in memory gives the row that saving after each crash would have.
type writer struct {
	ctx    context.Context
	q      *prepared
	owners *corepipe.OwnerRules

	// groups are folded and not saved yet, by signature.
	groups map[string]*corepipe.Group
}

// crashColumns are the columns of a crash row that Upsert writes, in the
// order of its arguments; id first.
var crashColumns = []string{"id", "captured_at", "node", "namespace", "pod", "exe", "exe_base", "signature", "status",
	"version", "workload", "build_id", "go_build_id", "core_stored", "summary"}

// upsertCrash inserts a crash row or replaces every column of the row of its
// id, which keeps its rowid and so its searchable text's.
var upsertCrash = func() string {
	set := make([]string, 0, len(crashColumns)-1)
	for _, c := range crashColumns[1:] {
		set = append(set, c+" = excluded."+c)
	}
	return "INSERT INTO crashes (" + strings.Join(crashColumns, ", ") + ") VALUES (?" + strings.Repeat(", ?", len(crashColumns)-1) +
		") ON CONFLICT (id) DO UPDATE SET " + strings.Join(set, ", ")
}()

// newWriter writes on tx, with the statements of shared (nil: prepared on
// tx).
func newWriter(ctx context.Context, tx *sql.Tx, shared *statements, owners *corepipe.OwnerRules) *writer {
	return &writer{ctx: ctx, q: newPrepared(tx, shared), owners: owners, groups: map[string]*corepipe.Group{}}
}

// upsert is Index.Upsert within the writer's transaction.
func (w *writer) upsert(r *corepipe.Report) error {
	if err := corepipe.CheckID(r.ID); err != nil {
		return fmt.Errorf("index upsert: %w", err)
	}
	var (
		rowid         int64
		prevStatus    corepipe.ReportStatus
		prevSignature string
	)
	err := w.q.QueryRowContext(w.ctx, `SELECT rowid, status, signature FROM crashes WHERE id = ?`, r.ID).Scan(&rowid, &prevStatus, &prevSignature)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("index upsert %s: %w", r.ID, FormatError(err))
	}
	if exists && r.Status == corepipe.StatusPending && prevStatus != corepipe.StatusPending {
		return nil
	}
	summary, err := json.Marshal(r.Summary())
	if err != nil {
		return fmt.Errorf("index upsert %s: encode summary: %w", r.ID, err)
	}
	var namespace, pod string
	if c := r.Container; c != nil {
		namespace, pod = c.Namespace, c.Pod
	}
	exe := reportExe(r)
	res, err := w.q.ExecContext(w.ctx, upsertCrash, r.ID, unixNanos(r.CapturedAt), r.Node, namespace, pod, exe, exeBase(exe), r.Signature, r.Status,
		r.Version(), r.Workload(), r.Artifacts.Executable.BuildID, r.Artifacts.Executable.GoBuildID, r.Artifacts.Core.Key != "", summary)
	if err != nil {
		return fmt.Errorf("index upsert %s: %w", r.ID, FormatError(err))
	}
	if !exists {
		// An update keeps the row's rowid; an insert's is the new one.
		if rowid, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("index upsert %s: %w", r.ID, FormatError(err))
		}
	}
	if err := w.text(rowid, exists, r); err != nil {
		return fmt.Errorf("index upsert: %w", err)
	}
	if exists && prevSignature == r.Signature {
		return nil
	}
	if exists && prevSignature != "" {
		// regroup folds from the crash rows, this batch's included: what
		// the writer folded of the old group so far is superseded.
		delete(w.groups, prevSignature)
		if err := regroup(w.ctx, w.q, prevSignature, w.owners); err != nil {
			return fmt.Errorf("index upsert %s: move out of its old group: %w", r.ID, err)
		}
	}
	if r.Signature != "" {
		if err := w.observe(r); err != nil {
			return fmt.Errorf("index upsert %s: %w", r.ID, err)
		}
	}
	return nil
}

// text replaces the searchable text of the crash row rowid; replace says
// whether the row had one.
func (w *writer) text(rowid int64, replace bool, r *corepipe.Report) error {
	if replace {
		if _, err := w.q.ExecContext(w.ctx, `DELETE FROM crashes_text WHERE rowid = ?`, rowid); err != nil {
			return fmt.Errorf("index text of %s: %w", r.ID, FormatError(err))
		}
	}
	if _, err := w.q.ExecContext(w.ctx, `INSERT INTO crashes_text (rowid, text) VALUES (?, ?)`, rowid, searchText(r)); err != nil {
		return fmt.Errorf("index text of %s: %w", r.ID, FormatError(err))
	}
	return nil
}

// observe folds r into its group, starting the group on its first crash.
func (w *writer) observe(r *corepipe.Report) error {
	g := w.groups[r.Signature]
	if g == nil {
		loaded, observed, err := loadGroupRow(w.ctx, w.q, r.Signature)
		switch {
		case err == nil:
			// Group.Observe goes on from the status the crashes gave it.
			loaded.Status = observed
			g = loaded
		case errors.Is(err, corepipe.ErrNotFound):
			// A new group, or one a rebuild or regroup folds again: the
			// fold starts from people's decision, not from its state
			// before.
			d, err := loadDecision(w.ctx, w.q, r.Signature)
			if err != nil {
				return err
			}
			g = &corepipe.Group{Triage: d}
		default:
			return err
		}
		if len(w.groups) >= maxFolding {
			if err := w.flush(); err != nil {
				return err
			}
		}
		w.groups[r.Signature] = g
	}
	if err := fold(w.ctx, w.q, g, r, w.owners); err != nil {
		return err
	}
	peopleAssign(g)
	return nil
}

// flush saves the groups folded so far.
func (w *writer) flush() error {
	for sig, g := range w.groups {
		if err := saveGroup(w.ctx, w.q, g); err != nil {
			return err
		}
		delete(w.groups, sig)
	}
	return nil
}

// Size is how many crashes and groups the index holds.
func (x *Index) Size(ctx context.Context) (crashes, groups int64, err error) {
	err = x.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM crashes), (SELECT count(*) FROM groups)`).Scan(&crashes, &groups)
	if err != nil {
		return 0, 0, fmt.Errorf("index size: %w", FormatError(err))
	}
	return crashes, groups, nil
}

// Crash returns the summary of crash id, corepipe.ErrNotFound when it is not
// indexed.
func (x *Index) Crash(ctx context.Context, id string) (*corepipe.Report, error) {
	var summary []byte
	err := x.db.QueryRowContext(ctx, `SELECT summary FROM crashes WHERE id = ?`, id).Scan(&summary)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("crash %s: %w", id, corepipe.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("index get %s: %w", id, FormatError(err))
	}
	return decodeSummary(id, summary)
}

// Crashes lists the summaries matching f, newest first (captured_at, then id,
// descending), and the cursor of the next page, "" after the last one.
//
// Paging is by key, not offset: a cursor names the last row returned, so
// crashes indexed between two pages never shift, repeat or hide the rows
// that were already there.
func (x *Index) Crashes(ctx context.Context, f corepipe.CrashFilter) ([]*corepipe.Report, string, error) {
	var (
		where []string
		args  []any
	)
	for _, c := range []struct{ column, value string }{
		{"node", f.Node},
		{"namespace", f.Namespace},
		{"pod", f.Pod},
		{"signature", f.Signature},
		{"status", string(f.Status)},
	} {
		if c.value != "" {
			where = append(where, c.column+" = ?")
			args = append(args, c.value)
		}
	}
	if f.BuildID != "" {
		where = append(where, "(build_id = ? OR go_build_id = ?)")
		args = append(args, f.BuildID, f.BuildID)
	}
	switch {
	case strings.Contains(f.Exe, "/"):
		where = append(where, "exe = ?")
		args = append(args, f.Exe)
	case f.Exe != "":
		// A name without a slash is a base name: one indexed column, not
		// an OR that no index serves in time order.
		where = append(where, "exe_base = ?")
		args = append(args, f.Exe)
	}
	if f.Query != "" {
		match, err := matchQuery(f.Query)
		if err != nil {
			return nil, "", fmt.Errorf("index list: %w", err)
		}
		if match != "" {
			term, err := x.matchTerm(ctx, match)
			if err != nil {
				return nil, "", fmt.Errorf("index list: %w", err)
			}
			where = append(where, term)
			args = append(args, match)
		}
	}
	rows, limit, err := x.page(ctx, crashPages, "SELECT id, captured_at, summary FROM crashes", where, args, f.Since, f.Cursor, f.Limit)
	if err != nil {
		return nil, "", fmt.Errorf("index list: %w", err)
	}
	defer rows.Close()
	var (
		out  []*corepipe.Report
		last cursorKey
		more bool
	)
	for rows.Next() {
		if len(out) == limit {
			more = true
			break
		}
		var (
			k       cursorKey
			summary []byte
		)
		if err := rows.Scan(&k.key, &k.at, &summary); err != nil {
			return nil, "", fmt.Errorf("index list: %w", FormatError(err))
		}
		r, err := decodeSummary(k.key, summary)
		if err != nil {
			return nil, "", err
		}
		out = append(out, r)
		last = k
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("index list: %w", FormatError(err))
	}
	if !more {
		return out, "", nil
	}
	return out, last.encode(crashPages.version), nil
}

func pageLimit(n int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("%w: limit %d", corepipe.ErrInvalid, n)
	case n == 0:
		return DefaultLimit, nil
	case n > MaxLimit:
		return MaxLimit, nil
	}
	return n, nil
}

// reportExe is the executable path a crash is filed under: what the kernel
// reported for the process, else where the collector found the file.
func reportExe(r *corepipe.Report) string {
	if r.Process.Exe != "" {
		return r.Process.Exe
	}
	return r.Artifacts.Executable.Path
}

// exeBase lets people filter on "myserver" without knowing where it was
// installed in the image.
func exeBase(exe string) string {
	if exe == "" {
		return ""
	}
	return path.Base(exe)
}

// unixNanos maps the zero time to 0: time.Time{}.UnixNano is undefined, and a
// report without a capture time should still be listed (last) rather than
// rejected.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// scanSummaries reads (id, captured_at, summary) rows and closes them.
func scanSummaries(rows *sql.Rows) ([]*corepipe.Report, error) {
	defer rows.Close()
	var out []*corepipe.Report
	for rows.Next() {
		var (
			id         string
			capturedAt int64
			summary    []byte
		)
		if err := rows.Scan(&id, &capturedAt, &summary); err != nil {
			return nil, FormatError(err)
		}
		r, err := decodeSummary(id, summary)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, FormatError(err)
	}
	return out, nil
}

func decodeSummary(id string, b []byte) (*corepipe.Report, error) {
	var r corepipe.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("index: decode summary of %s: %w", id, err)
	}
	return &r, nil
}
