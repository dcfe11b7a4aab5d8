package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/corepipe/corepipe"
)

// maxShares bounds a group's breakdown by version or workload: a crash loop
// across a fleet must not turn one group page into thousands of rows.
const maxShares = 50

// MaxBuckets bounds Occurrences, whatever step a caller asks for.
const MaxBuckets = 1000

// fold is Group.Observe, which starts a first crash's group afresh, keeping
// the group's triage and owner, then folds r into the triage too. A group
// nobody assigned is owned as the owners rules say of its latest crash.
func fold(ctx context.Context, tx dbtx, g *corepipe.Group, r *corepipe.Report, owners *corepipe.OwnerRules) error {
	t, assignee := g.Triage, g.Assignee
	g.Observe(r)
	g.Triage, g.Assignee = t, assignee
	if t == nil || t.Assignee == "" {
		if o := owners.Owner(r); o != "" {
			g.Assignee = o
		}
	}
	return foldTriage(ctx, tx, t, r)
}

// regroup folds a group again from the crashes that still carry its
// signature, oldest first, and deletes it when none is left. Observe cannot
// take a crash back, and a crash moves between groups only when it is
// re-analysed, so the cost of a full fold is paid rarely. The fold streams
// the rows: memory stays constant whatever the group's size.
func regroup(ctx context.Context, tx dbtx, signature string, owners *corepipe.OwnerRules) error {
	rows, err := tx.QueryContext(ctx, `SELECT summary FROM crashes WHERE signature = ? ORDER BY captured_at, id`, signature)
	if err != nil {
		return fmt.Errorf("regroup %s: %w", signature, FormatError(err))
	}
	defer rows.Close()
	d, err := loadDecision(ctx, tx, signature)
	if err != nil {
		return fmt.Errorf("regroup %s: %w", signature, err)
	}
	g := corepipe.Group{Triage: d}
	for rows.Next() {
		var summary []byte
		if err := rows.Scan(&summary); err != nil {
			return fmt.Errorf("regroup %s: %w", signature, FormatError(err))
		}
		var r corepipe.Report
		if err := json.Unmarshal(summary, &r); err != nil {
			return fmt.Errorf("regroup %s: decode summary: %w", signature, err)
		}
		if err := fold(ctx, tx, &g, &r, owners); err != nil {
			return fmt.Errorf("regroup %s: %w", signature, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("regroup %s: %w", signature, FormatError(err))
	}
	rows.Close()
	if g.Count == 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM groups WHERE signature = ?`, signature); err != nil {
			return fmt.Errorf("regroup %s: delete: %w", signature, FormatError(err))
		}
		return nil
	}
	return saveGroup(ctx, tx, &g)
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const groupColumns = `signature, title, count, first_seen, last_seen, first_version, last_version, status, nodes, workloads, triage, observed, assignee`

func loadGroup(ctx context.Context, q querier, signature string) (*corepipe.Group, error) {
	g, _, err := loadGroupRow(ctx, q, signature)
	return g, err
}

// loadGroupRow also returns the status the group's crashes alone give it,
// which Group.Observe goes on from; the group's Status is the one it shows.
func loadGroupRow(ctx context.Context, q querier, signature string) (*corepipe.Group, corepipe.GroupStatus, error) {
	g, observed, err := scanGroupRow(q.QueryRowContext(ctx, `SELECT `+groupColumns+` FROM groups WHERE signature = ?`, signature))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", fmt.Errorf("group %s: %w", signature, corepipe.ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("load group %s: %w", signature, err)
	}
	return g, observed, nil
}

func saveGroup(ctx context.Context, tx dbtx, g *corepipe.Group) error {
	nodes, err := json.Marshal(nonNil(g.Nodes))
	if err != nil {
		return fmt.Errorf("save group %s: %w", g.Signature, err)
	}
	workloads, err := json.Marshal(nonNil(g.Workloads))
	if err != nil {
		return fmt.Errorf("save group %s: %w", g.Signature, err)
	}
	var triage []byte
	if g.Triage != nil {
		if triage, err = json.Marshal(g.Triage); err != nil {
			return fmt.Errorf("save group %s: %w", g.Signature, err)
		}
	}
	peopleAssign(g)
	// g.Status is what the crashes say; the status column is what the
	// group shows, which lists filter on.
	_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO groups (`+groupColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		g.Signature, g.Title, g.Count, unixNanos(g.FirstSeen), unixNanos(g.LastSeen), g.FirstVersion, g.LastVersion,
		g.Triage.GroupStatus(g.Status, time.Now()), nodes, workloads, triage, g.Status, g.Assignee)
	if err != nil {
		return fmt.Errorf("save group %s: %w", g.Signature, FormatError(err))
	}
	return nil
}

// peopleAssign gives g the owner people named, whose say wins over the
// owners rules.
func peopleAssign(g *corepipe.Group) {
	if g.Triage != nil && g.Triage.Assignee != "" {
		g.Assignee = g.Triage.Assignee
	}
}

type scanner interface{ Scan(dest ...any) error }

func scanGroup(row scanner) (*corepipe.Group, error) {
	g, _, err := scanGroupRow(row)
	return g, err
}

func scanGroupRow(row scanner) (*corepipe.Group, corepipe.GroupStatus, error) {
	var (
		g                        corepipe.Group
		first, last              int64
		nodes, workloads, triage []byte
		observed                 corepipe.GroupStatus
	)
	if err := row.Scan(&g.Signature, &g.Title, &g.Count, &first, &last, &g.FirstVersion, &g.LastVersion,
		&g.Status, &nodes, &workloads, &triage, &observed, &g.Assignee); err != nil {
		return nil, "", FormatError(err)
	}
	if observed == "" {
		// Saved before triage existed: shown and observed were one.
		observed = g.Status
	}
	if triage != nil {
		g.Triage = new(corepipe.Triage)
		if err := json.Unmarshal(triage, g.Triage); err != nil {
			return nil, "", fmt.Errorf("group %s: decode triage: %w", g.Signature, err)
		}
		// An ignore that has run out shows as the crashes say.
		g.Status = g.Triage.GroupStatus(observed, time.Now())
	}
	g.FirstSeen, g.LastSeen = fromNanos(first), fromNanos(last)
	if err := json.Unmarshal(nodes, &g.Nodes); err != nil {
		return nil, "", fmt.Errorf("group %s: decode nodes: %w", g.Signature, err)
	}
	if err := json.Unmarshal(workloads, &g.Workloads); err != nil {
		return nil, "", fmt.Errorf("group %s: decode workloads: %w", g.Signature, err)
	}
	return &g, observed, nil
}

// Group returns the group of signature, corepipe.ErrNotFound when no indexed
// crash has it.
func (x *Index) Group(ctx context.Context, signature string) (*corepipe.Group, error) {
	if err := checkSignature(signature); err != nil {
		return nil, err
	}
	return loadGroup(ctx, x.db, signature)
}

// Groups lists the groups matching f, most recently seen first, and the
// cursor of the next page ("" after the last). Paging is by key, as for
// Crashes.
func (x *Index) Groups(ctx context.Context, f corepipe.GroupFilter) ([]*corepipe.Group, string, error) {
	var (
		where []string
		args  []any
	)
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, f.Status)
	}
	if f.Assignee != "" {
		where = append(where, "assignee = ?")
		args = append(args, f.Assignee)
	}
	if f.FirstVersion != "" {
		where = append(where, "first_version = ?")
		args = append(args, f.FirstVersion)
	}
	rows, limit, err := x.page(ctx, groupPages, `SELECT `+groupColumns+` FROM groups`, where, args, f.Since, f.Cursor, f.Limit)
	if err != nil {
		return nil, "", fmt.Errorf("index groups: %w", err)
	}
	defer rows.Close()
	var out []*corepipe.Group
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, "", fmt.Errorf("index groups: %w", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("index groups: %w", FormatError(err))
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	last := out[limit-1]
	return out, cursorKey{at: unixNanos(last.LastSeen), key: last.Signature}.encode(groupPages.version), nil
}

// Versions breaks a group's crashes down by the build they came from, most
// recently seen first.
func (x *Index) Versions(ctx context.Context, signature string) ([]corepipe.Share, error) {
	return x.shares(ctx, signature, "version")
}

// Workloads breaks a group's crashes down by where they ran, most recently
// seen first.
func (x *Index) Workloads(ctx context.Context, signature string) ([]corepipe.Share, error) {
	return x.shares(ctx, signature, "workload")
}

// shares groups by column, which is one of this file's constants, never
// input.
func (x *Index) shares(ctx context.Context, signature, column string) ([]corepipe.Share, error) {
	if err := checkSignature(signature); err != nil {
		return nil, err
	}
	rows, err := x.db.QueryContext(ctx, `SELECT `+column+`, count(*), min(captured_at), max(captured_at)
		FROM crashes WHERE signature = ? GROUP BY `+column+` ORDER BY max(captured_at) DESC LIMIT ?`, signature, maxShares)
	if err != nil {
		return nil, fmt.Errorf("index %ss of %s: %w", column, signature, FormatError(err))
	}
	defer rows.Close()
	out := []corepipe.Share{}
	for rows.Next() {
		var (
			s           corepipe.Share
			first, last int64
		)
		if err := rows.Scan(&s.Value, &s.Count, &first, &last); err != nil {
			return nil, fmt.Errorf("index %ss of %s: %w", column, signature, FormatError(err))
		}
		s.FirstSeen, s.LastSeen = fromNanos(first), fromNanos(last)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index %ss of %s: %w", column, signature, FormatError(err))
	}
	return out, nil
}

// Occurrences counts a group's crashes in n buckets of step, the first
// starting at from.
func (x *Index) Occurrences(ctx context.Context, signature string, from time.Time, step time.Duration, n int) ([]int64, error) {
	if err := checkSignature(signature); err != nil {
		return nil, err
	}
	if step <= 0 || n < 1 || n > MaxBuckets {
		return nil, fmt.Errorf("%w: occurrences: step %v, %d buckets", corepipe.ErrInvalid, step, n)
	}
	start := unixNanos(from)
	end := start + int64(n)*int64(step)
	rows, err := x.db.QueryContext(ctx, `SELECT (captured_at - ?) / ?, count(*) FROM crashes
		WHERE signature = ? AND captured_at >= ? AND captured_at < ? GROUP BY 1`,
		start, int64(step), signature, start, end)
	if err != nil {
		return nil, fmt.Errorf("index occurrences of %s: %w", signature, FormatError(err))
	}
	defer rows.Close()
	out := make([]int64, n)
	for rows.Next() {
		var bucket, count int64
		if err := rows.Scan(&bucket, &count); err != nil {
			return nil, fmt.Errorf("index occurrences of %s: %w", signature, FormatError(err))
		}
		if bucket >= 0 && bucket < int64(n) {
			out[bucket] = count
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index occurrences of %s: %w", signature, FormatError(err))
	}
	return out, nil
}

// maxSignature is far above any signature the analyzer writes
// ("gocrash/v1:" and a hash) and keeps a hostile query short.
const maxSignature = 256

// checkSignature accepts any printable text of a sane length: a signature
// is opaque here, and only ever a bound parameter.
func checkSignature(s string) error {
	ok := s != "" && len(s) <= maxSignature && !strings.ContainsFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r) || unicode.IsSpace(r)
	})
	if !ok {
		return fmt.Errorf("%w: signature %q", corepipe.ErrInvalid, corepipe.Clip(s, 64))
	}
	return nil
}

// fromNanos is unixNanos reversed: 0 is the zero time.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
