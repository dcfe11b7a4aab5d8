// Triage of groups: people's decisions (resolve, ignore, assign) kept apart
// from the groups themselves, which a rebuild refolds from the crashes; each
// group's copy of its decision as the crashes since have left it; and the
// history of every change.

package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
)

// maxHistory bounds the history a group's page shows, newest first.
const maxHistory = 200

// Who made a change that a crash made.
const whoCrash = "corepipe"

// SetTriage makes decision c about the group of signature on behalf of by
// (its Who and Role), records it in the group's history, and returns the
// group as it now stands. corepipe.ErrNotFound when no crash has the
// signature.
func (x *Index) SetTriage(ctx context.Context, signature string, c corepipe.TriageChange, by corepipe.TriageEvent) (*corepipe.Group, error) {
	if err := checkSignature(signature); err != nil {
		return nil, err
	}
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("triage %s: %w", signature, FormatError(err))
	}
	defer tx.Rollback()
	g, observed, err := loadGroupRow(ctx, tx, signature)
	if err != nil {
		return nil, err
	}
	old, err := loadDecision(ctx, tx, signature)
	if err != nil {
		return nil, err
	}
	versions, err := firstSeenVersions(ctx, tx, signature)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	d, change, err := old.Apply(c, g, versions, now)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("triage %s: %w", signature, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO triage (signature, decision) VALUES (?, ?)`, signature, raw); err != nil {
		return nil, fmt.Errorf("triage %s: %w", signature, FormatError(err))
	}
	g.Status = observed
	if c.Assignee != nil {
		// Unassigned by people: the owners rules name the owner again
		// from the next crash.
		g.Assignee = *c.Assignee
	}
	if c.Status == "" && g.Triage != nil {
		// The same decision with another owner or issue: the group's copy
		// keeps what its crashes have done to it.
		folded := *g.Triage
		folded.Assignee, folded.IssueURL = d.Assignee, d.IssueURL
		d = &folded
	}
	g.Triage = d
	if err := saveGroup(ctx, tx, g); err != nil {
		return nil, err
	}
	ev := corepipe.TriageEvent{At: now, Who: by.Who, Role: by.Role, Change: change, Comment: c.Comment}
	if err := addHistory(ctx, tx, signature, ev); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("triage %s: commit: %w", signature, FormatError(err))
	}
	g.Status = d.GroupStatus(observed, now)
	return g, nil
}

// Triage returns the decision people made about a group, as they made it
// (no crash folded in); nil when nobody triaged it. The notifier folds its
// own copy from it.
func (x *Index) Triage(ctx context.Context, signature string) (*corepipe.Triage, error) {
	if err := checkSignature(signature); err != nil {
		return nil, err
	}
	return loadDecision(ctx, x.db, signature)
}

// TriageHistory lists the changes to a group, newest first, at most
// maxHistory of them.
func (x *Index) TriageHistory(ctx context.Context, signature string) ([]corepipe.TriageEvent, error) {
	if err := checkSignature(signature); err != nil {
		return nil, err
	}
	rows, err := x.db.QueryContext(ctx, `SELECT at, who, role, change, comment, coalesce(crash_id, '')
		FROM triage_history WHERE signature = ? ORDER BY seq DESC LIMIT ?`, signature, maxHistory)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", signature, FormatError(err))
	}
	defer rows.Close()
	out := []corepipe.TriageEvent{}
	for rows.Next() {
		var (
			e  corepipe.TriageEvent
			at int64
		)
		if err := rows.Scan(&at, &e.Who, &e.Role, &e.Change, &e.Comment, &e.CrashID); err != nil {
			return nil, fmt.Errorf("history of %s: %w", signature, FormatError(err))
		}
		e.At = fromNanos(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history of %s: %w", signature, FormatError(err))
	}
	return out, nil
}

func addHistory(ctx context.Context, tx dbtx, signature string, e corepipe.TriageEvent) error {
	var crash any
	if e.CrashID != "" {
		crash = e.CrashID
	}
	// OR IGNORE: a crash folded again by a rebuild changed its group once.
	_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO triage_history (signature, at, who, role, change, comment, crash_id)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, signature, unixNanos(e.At), e.Who, e.Role, e.Change, e.Comment, crash)
	if err != nil {
		return fmt.Errorf("history of %s: %w", signature, FormatError(err))
	}
	return nil
}

func loadDecision(ctx context.Context, q querier, signature string) (*corepipe.Triage, error) {
	var raw []byte
	err := q.QueryRowContext(ctx, `SELECT decision FROM triage WHERE signature = ?`, signature).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("triage of %s: %w", signature, FormatError(err))
	}
	var t corepipe.Triage
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("triage of %s: decode: %w", signature, err)
	}
	return &t, nil
}

// firstSeenVersions are a group's versions in the order they first
// crashed, the order of versions that are not semver.
func firstSeenVersions(ctx context.Context, tx *sql.Tx, signature string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT version FROM crashes WHERE signature = ? AND version != ''
		GROUP BY version ORDER BY min(captured_at), version LIMIT 200`, signature)
	if err != nil {
		return nil, fmt.Errorf("versions of %s: %w", signature, FormatError(err))
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("versions of %s: %w", signature, FormatError(err))
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// foldTriage folds r into the group's decision after Group.Observe has
// folded it into the group, and records in the history what the crash
// changed.
func foldTriage(ctx context.Context, tx dbtx, t *corepipe.Triage, r *corepipe.Report) error {
	if t == nil {
		return nil
	}
	was := *t
	var change string
	switch t.Observe(r) {
	case corepipe.TransitionRegressed:
		change = "regressed: crashed in " + orUnknown(r.Version())
		switch was.ResolvedIn {
		case "":
			change += " after it was resolved"
		case corepipe.ResolvedNextRelease:
			change += ", newer than " + orUnknown(was.Baseline)
		default:
			change += ", resolved in " + was.ResolvedIn
		}
	case corepipe.TransitionUnignored:
		change = "no longer ignored: "
		if !was.IgnoreUntil.IsZero() && !r.CapturedAt.Before(was.IgnoreUntil) {
			change += "crashed after " + was.IgnoreUntil.UTC().Format(time.RFC3339)
		} else {
			change += fmt.Sprintf("crashed %d more times", t.Since)
		}
	default:
		return nil
	}
	return addHistory(ctx, tx, r.Signature, corepipe.TriageEvent{At: r.CapturedAt, Who: whoCrash, Change: change, CrashID: r.ID})
}

func orUnknown(v string) string {
	if v == "" {
		return "an unknown version"
	}
	return v
}

// searchText is what the full-text search finds a crash by.
func searchText(r *corepipe.Report) string {
	var b strings.Builder
	b.WriteString(r.Title)
	if r.Panic != nil {
		b.WriteString("\n")
		b.WriteString(r.Panic.Message)
	}
	frames := r.TopFrames
	if g := r.CrashingGoroutineReport(); g != nil {
		frames = g.Frames
	}
	// The innermost frames say where it crashed; a stack overflow's
	// millionth frame says nothing more.
	for i, f := range frames {
		if i == maxSearchFrames {
			break
		}
		b.WriteString("\n")
		b.WriteString(f.Function)
	}
	return b.String()
}

const maxSearchFrames = 100

// matchQuery turns what someone typed into an FTS5 query: each word a
// quoted phrase, all of them required; a word that ends in '*' is a prefix.
// Quoting keeps FTS5's other operators (NEAR, AND, column filters, '^') out
// of reach of the input. Whole words are the default because FTS5 reads a
// prefix query's whole match list before it returns the first row: on ten
// million crashes, 2 s for a word every crash has, against milliseconds
// for the word itself.
func matchQuery(q string) (string, error) {
	words := strings.Fields(q)
	if len(q) > maxQuery || len(words) > maxQueryWords {
		return "", fmt.Errorf("%w: search: at most %d words, %d characters", corepipe.ErrInvalid, maxQueryWords, maxQuery)
	}
	var parts []string
	for _, w := range words {
		prefix := ""
		if len(w) > 1 && strings.HasSuffix(w, "*") {
			w, prefix = strings.TrimSuffix(w, "*"), "*"
		}
		parts = append(parts, `"`+strings.ReplaceAll(w, `"`, `""`)+`"`+prefix)
	}
	return strings.Join(parts, " "), nil
}

const (
	maxQuery      = 500
	maxQueryWords = 16
)

// backfillText makes the crashes indexed before search existed findable,
// from their summaries (title, panic message, top frames), one page at a
// time.
func backfillText(ctx context.Context, tx *sql.Tx) error {
	w := newWriter(ctx, tx, nil, nil)
	err := eachSummary(ctx, tx, func(r *corepipe.Report) error {
		var rowid int64
		if err := tx.QueryRowContext(ctx, `SELECT rowid FROM crashes WHERE id = ?`, r.ID).Scan(&rowid); err != nil {
			return fmt.Errorf("index text of %s: %w", r.ID, FormatError(err))
		}
		return w.text(rowid, true, r)
	})
	if err != nil {
		return fmt.Errorf("backfill search: %w", err)
	}
	return nil
}

// fewMatches is how many matching crashes are few enough to fetch and sort
// by time; with more, walking the time index until the page is full is
// cheaper. A variable for the tests, which take each way.
var fewMatches = 2000

// denseMatches is the share of the newest crashes matching a search above
// which the walk down the time index asks the text index about each crash
// it meets, instead of gathering every match first: gathering costs in
// proportion to all the matches, asking in proportion to the crashes walked
// to fill a page. A variable for the tests.
var denseMatches = 0.05

// densitySample is how many of the newest crashes (by rowid, which follows
// arrival) a search's density is measured on.
const densitySample = 20_000

// matchTerm is the WHERE term of a search, with the match query as its one
// argument, chosen by how many crashes the search matches:
//   - few: SQLite's planner's own way, fetch every match and sort them;
//   - many, but sparse among the newest: walk the time index and check
//     each crash against the gathered matches (the unary + keeps the
//     planner from driving the query by rowid), which fills a page of a
//     common word at once;
//   - dense: walk the time index and ask the text index whether each crash
//     matches, a seek by rowid in every word's match list, so a page costs
//     a few dozen seeks however many crashes match.
func (x *Index) matchTerm(ctx context.Context, match string) (string, error) {
	var n int
	err := x.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT rowid FROM crashes_text WHERE crashes_text MATCH ? LIMIT ?)`,
		match, fewMatches+1).Scan(&n)
	if err != nil {
		return "", FormatError(err)
	}
	if n <= fewMatches {
		return "rowid IN (SELECT rowid FROM crashes_text WHERE crashes_text MATCH ?)", nil
	}
	var newest, dense int64
	err = x.db.QueryRowContext(ctx, `SELECT coalesce(max(rowid), 0) FROM crashes`).Scan(&newest)
	if err == nil {
		err = x.db.QueryRowContext(ctx, `SELECT count(*) FROM crashes_text WHERE crashes_text MATCH ? AND rowid > ?`,
			match, newest-densitySample).Scan(&dense)
	}
	if err != nil {
		return "", FormatError(err)
	}
	if float64(dense) >= denseMatches*float64(min(newest, densitySample)) {
		return "EXISTS (SELECT 1 FROM crashes_text t WHERE t.crashes_text MATCH ? AND t.rowid >= crashes.rowid AND t.rowid <= crashes.rowid)", nil
	}
	return "+rowid IN (SELECT rowid FROM crashes_text WHERE crashes_text MATCH ?)", nil
}

// SetOwners makes o the rules that own the groups nobody assigned, from
// their next crash on (a rebuild applies them to all); nil removes them.
func (x *Index) SetOwners(o *corepipe.OwnerRules) { x.owners.Store(o) }

// maxReleases bounds the releases page.
const maxReleases = 100

// Releases lists the versions crashes came from, most recently crashing
// first, each with its crashes, the groups it crashed in and the groups
// first seen in it. It reads every crash row once: a page people open, not
// one a script polls.
func (x *Index) Releases(ctx context.Context) ([]corepipe.Release, error) {
	rows, err := x.db.QueryContext(ctx, `SELECT c.version, count(*), count(DISTINCT c.signature), min(c.captured_at), max(c.captured_at),
			(SELECT count(*) FROM groups g WHERE g.first_version = c.version)
		FROM crashes c WHERE c.version != '' GROUP BY c.version ORDER BY max(c.captured_at) DESC LIMIT ?`, maxReleases)
	if err != nil {
		return nil, fmt.Errorf("index releases: %w", FormatError(err))
	}
	defer rows.Close()
	out := []corepipe.Release{}
	for rows.Next() {
		var (
			rel         corepipe.Release
			first, last int64
		)
		if err := rows.Scan(&rel.Version, &rel.Crashes, &rel.Groups, &first, &last, &rel.NewGroups); err != nil {
			return nil, fmt.Errorf("index releases: %w", FormatError(err))
		}
		rel.FirstSeen, rel.LastSeen = fromNanos(first), fromNanos(last)
		out = append(out, rel)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index releases: %w", FormatError(err))
	}
	return out, nil
}
