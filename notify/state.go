package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/corepipe/corepipe"
)

// state is the notifier's memory in one SQLite file: the groups, the crashes
// already handled, and the outbox of decided messages not yet delivered.
// Deciding and queueing a message is one transaction, so an ack never
// precedes a decision and a restart neither repeats nor loses one.
type state struct {
	db *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS groups (
	signature TEXT PRIMARY KEY,
	pending   INTEGER NOT NULL,  -- crashes not yet summarised
	state     BLOB NOT NULL      -- JSON of groupState
);
CREATE INDEX IF NOT EXISTS groups_pending ON groups (pending) WHERE pending > 0;
CREATE TABLE IF NOT EXISTS handled (
	id          TEXT PRIMARY KEY,
	signed      INTEGER NOT NULL, -- handled with a signature (analysed)
	captured_at INTEGER NOT NULL  -- unix nanoseconds, for pruning
);
CREATE INDEX IF NOT EXISTS handled_captured_at ON handled (captured_at);
CREATE TABLE IF NOT EXISTS outbox (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	signature TEXT NOT NULL,     -- "" for digests
	message   BLOB NOT NULL      -- JSON of Message
);
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`

// Keys of the meta table.
const (
	metaLastDigest = "last_digest" // RFC 3339 nanoseconds
	metaUnanalysed = "unanalysed"  // crashes without a group since the last digest
)

func openState(path string) (*state, error) {
	// The driver cuts the DSN at the first '?'.
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("notifier state %q: %w: path contains '?'", path, corepipe.ErrInvalid)
	}
	// synchronous(FULL): a commit is on disk before the report is acked.
	dsn := path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("notifier state %q: %w", path, err)
	}
	// One connection serialises the consumer and the delivery loop without
	// busy waits; each transaction is short.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("notifier state %q: create schema: %w", path, err)
	}
	return &state{db: db}, nil
}

func (s *state) close() error { return s.db.Close() }

// tx runs fn in a transaction and commits it when fn succeeds.
func (s *state) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// outcome is what handle did with one report.
type outcome struct {
	duplicate bool
	kind      Kind   // announced as
	reason    string // or why not
}

// handle decides about report r and records the decision, the handled
// crash and any message in one transaction.
func (s *state) handle(ctx context.Context, p Policy, r *corepipe.Report, now time.Time) (outcome, error) {
	var out outcome
	err := s.tx(ctx, func(tx *sql.Tx) error {
		out = outcome{}
		var signed bool
		switch err := tx.QueryRowContext(ctx, `SELECT signed FROM handled WHERE id = ?`, r.ID).Scan(&signed); {
		case err == nil && (signed || r.Signature == ""):
			// A redelivery, or the same crash published again; a failed
			// analysis redone successfully is handled once more, now
			// that it has a group.
			out.duplicate = true
			return nil
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO handled (id, signed, captured_at) VALUES (?, ?, ?)`,
			r.ID, r.Signature != "", r.CapturedAt.UnixNano()); err != nil {
			return err
		}
		if r.Signature == "" {
			out.reason = reasonSummarised
			if now.Sub(r.CapturedAt) > p.MaxAge {
				out.reason = reasonStale
				return nil
			}
			return addMeta(ctx, tx, metaUnanalysed, 1)
		}
		gs, err := loadGroup(ctx, tx, r.Signature)
		if err != nil {
			return err
		}
		out.kind, out.reason = p.decide(gs, r, now)
		if err := saveGroup(ctx, tx, gs); err != nil {
			return err
		}
		if out.kind == "" {
			return nil
		}
		g := gs.Group
		m := &Message{Kind: out.kind, Report: r, Group: &g}
		if out.kind == KindSpike {
			m.Spike = &Spike{Count: p.SpikeCount, Window: p.SpikeWindow}
		}
		return enqueue(ctx, tx, r.Signature, m)
	})
	if err != nil {
		return outcome{}, fmt.Errorf("record report %s: %w", r.ID, err)
	}
	return out, nil
}

func loadGroup(ctx context.Context, tx *sql.Tx, signature string) (*groupState, error) {
	var raw []byte
	gs := &groupState{}
	switch err := tx.QueryRowContext(ctx, `SELECT state FROM groups WHERE signature = ?`, signature).Scan(&raw); {
	case errors.Is(err, sql.ErrNoRows):
		return gs, nil
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(raw, gs); err != nil {
		return nil, fmt.Errorf("group %s: %w", signature, err)
	}
	return gs, nil
}

func saveGroup(ctx context.Context, tx *sql.Tx, gs *groupState) error {
	raw, err := json.Marshal(gs)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO groups (signature, pending, state) VALUES (?, ?, ?)
		ON CONFLICT (signature) DO UPDATE SET pending = excluded.pending, state = excluded.state`,
		gs.Group.Signature, gs.Pending.Count, raw)
	return err
}

func enqueue(ctx context.Context, tx *sql.Tx, signature string, m *Message) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO outbox (signature, message) VALUES (?, ?)`, signature, raw)
	return err
}

func addMeta(ctx context.Context, tx *sql.Tx, key string, n int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + ?`, key, n, n)
	return err
}

// digestGroups is how many groups a digest lists; the rest are counted.
const digestGroups = 10

// digest summarises every group's pending crashes, once DigestInterval has
// passed since the last digest: as follow-ups in the groups' threads when
// threads is set and the group has one, in one digest message otherwise.
// It reports whether it queued anything.
func (s *state) digest(ctx context.Context, p Policy, now time.Time, threads bool) (bool, error) {
	queued := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		queued = false
		last, err := lastDigest(ctx, tx, now)
		if err != nil {
			return err
		}
		if now.Sub(last) < p.DigestInterval {
			return nil
		}
		var unanalysed int64
		err = tx.QueryRowContext(ctx, `SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?`, metaUnanalysed).Scan(&unanalysed)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		d := &Digest{Since: last, Until: now, Unanalysed: unanalysed}
		pending, err := pendingGroups(ctx, tx)
		if err != nil {
			return err
		}
		var rest []Summary
		for _, gs := range pending {
			sum := gs.summary()
			if threads && gs.Thread != "" {
				m := &Message{Kind: KindFollowUp, FollowUp: &sum, Thread: gs.Thread}
				if err := enqueue(ctx, tx, sum.Signature, m); err != nil {
					return err
				}
				queued = true
			} else {
				rest = append(rest, sum)
			}
			gs.Pending = Summary{}
			if err := saveGroup(ctx, tx, gs); err != nil {
				return err
			}
		}
		sort.SliceStable(rest, func(i, j int) bool { return rest[i].Count > rest[j].Count })
		for i, sum := range rest {
			if i < digestGroups {
				d.Groups = append(d.Groups, sum)
				continue
			}
			d.MoreGroups++
			d.MoreCrashes += sum.Count
		}
		if len(d.Groups) > 0 || d.Unanalysed > 0 {
			if err := enqueue(ctx, tx, "", &Message{Kind: KindDigest, Digest: d}); err != nil {
				return err
			}
			queued = true
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM meta WHERE key = ?`, metaUnanalysed); err != nil {
			return err
		}
		return setMeta(ctx, tx, metaLastDigest, now.UTC().Format(time.RFC3339Nano))
	})
	if err != nil {
		return false, fmt.Errorf("digest: %w", err)
	}
	return queued, nil
}

// lastDigest is when the last digest was made; a new state starts the
// first interval now rather than sending a digest at once.
func lastDigest(ctx context.Context, tx *sql.Tx, now time.Time) (time.Time, error) {
	var v string
	err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, metaLastDigest).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return now, setMeta(ctx, tx, metaLastDigest, now.UTC().Format(time.RFC3339Nano))
	}
	if err != nil {
		return time.Time{}, err
	}
	return time.Parse(time.RFC3339Nano, v)
}

func setMeta(ctx context.Context, tx *sql.Tx, key, value string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// pendingGroups loads the groups with crashes to summarise. Their number is
// bounded by the groups that crashed within one digest interval.
func pendingGroups(ctx context.Context, tx *sql.Tx) ([]*groupState, error) {
	rows, err := tx.QueryContext(ctx, `SELECT state FROM groups WHERE pending > 0`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*groupState
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		gs := &groupState{}
		if err := json.Unmarshal(raw, gs); err != nil {
			return nil, err
		}
		out = append(out, gs)
	}
	return out, rows.Err()
}

// pruneHandled forgets crashes captured before t: the reports stream no
// longer holds them, so they cannot be delivered again.
func (s *state) pruneHandled(ctx context.Context, t time.Time) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM handled WHERE captured_at < ?`, t.UnixNano()); err != nil {
		return fmt.Errorf("prune handled crashes: %w", err)
	}
	return nil
}

// queued is one message in the outbox.
type queued struct {
	seq       int64
	signature string
	msg       Message
}

// next returns the oldest undelivered message, or nil.
func (s *state) next(ctx context.Context) (*queued, error) {
	q := &queued{}
	var raw []byte
	err := s.db.QueryRowContext(ctx, `SELECT seq, signature, message FROM outbox ORDER BY seq LIMIT 1`).Scan(&q.seq, &q.signature, &raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	if err := json.Unmarshal(raw, &q.msg); err != nil {
		return nil, fmt.Errorf("read outbox message %d: %w", q.seq, err)
	}
	return q, nil
}

// finish removes q from the outbox, delivered or refused for good, and
// remembers the thread the sender opened for its group.
func (s *state) finish(ctx context.Context, q *queued, thread string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, q.seq); err != nil {
			return err
		}
		if thread == "" || q.signature == "" || q.msg.Kind == KindFollowUp {
			return nil
		}
		gs, err := loadGroup(ctx, tx, q.signature)
		if err != nil {
			return err
		}
		gs.Thread = thread
		return saveGroup(ctx, tx, gs)
	})
	if err != nil {
		return fmt.Errorf("record delivery of message %d: %w", q.seq, err)
	}
	return nil
}

// outboxLen is how many messages wait for delivery.
func (s *state) outboxLen(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n)
	return n, err
}
