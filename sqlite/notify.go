package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/corepipe/corepipe/notify"
)

// NotifyStore is the notifier's memory in one SQLite file: the groups, the
// crashes already handled, and the outbox of decided messages not yet
// delivered. It stores the notifier's records as the notifier encodes them.
type NotifyStore struct {
	db *DB
}

var _ notify.Store = (*NotifyStore)(nil)

// OpenNotifyStore opens or creates the notifier's state at path.
func OpenNotifyStore(path string) (*NotifyStore, error) {
	// synchronous(FULL): a commit is on disk before the report is acked.
	// One connection serialises the consumer and the delivery loop without
	// busy waits; each transaction is short.
	db, err := openDB(context.Background(), path, config{kind: "notify", synchronous: "FULL", maxConns: 1})
	if err != nil {
		return nil, fmt.Errorf("notifier state %q: %w", path, err)
	}
	return &NotifyStore{db: db}, nil
}

// Close releases the file.
func (s *NotifyStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close notifier state: %w", err)
	}
	return nil
}

// Update runs fn in one transaction and commits it when fn succeeds.
func (s *NotifyStore) Update(ctx context.Context, fn func(notify.StoreTx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return FormatError(err)
	}
	defer tx.Rollback()
	if err := fn(&notifyTx{ctx: ctx, tx: tx}); err != nil {
		return err
	}
	return FormatError(tx.Commit())
}

// Next returns the oldest message in the outbox; false when it is empty.
func (s *NotifyStore) Next(ctx context.Context) (notify.Stored, bool, error) {
	var m notify.Stored
	err := s.db.QueryRowContext(ctx, `SELECT seq, signature, message FROM outbox ORDER BY seq LIMIT 1`).Scan(&m.Seq, &m.Signature, &m.Message)
	if errors.Is(err, sql.ErrNoRows) {
		return notify.Stored{}, false, nil
	}
	if err != nil {
		return notify.Stored{}, false, FormatError(err)
	}
	return m, true, nil
}

// OutboxLen is how many messages wait for delivery.
func (s *NotifyStore) OutboxLen(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n)
	return n, FormatError(err)
}

// PruneHandled forgets the crashes captured before t.
func (s *NotifyStore) PruneHandled(ctx context.Context, t time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM handled WHERE captured_at < ?`, t.UnixNano())
	return FormatError(err)
}

// notifyTx is one Update's transaction.
type notifyTx struct {
	ctx context.Context
	tx  *sql.Tx
}

func (t *notifyTx) Handled(id string) (found, signed bool, err error) {
	err = t.tx.QueryRowContext(t.ctx, `SELECT signed FROM handled WHERE id = ?`, id).Scan(&signed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, false, nil
	case err != nil:
		return false, false, FormatError(err)
	}
	return true, signed, nil
}

func (t *notifyTx) SetHandled(id string, signed bool, capturedAt time.Time) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT OR REPLACE INTO handled (id, signed, captured_at) VALUES (?, ?, ?)`,
		id, signed, capturedAt.UnixNano())
	return FormatError(err)
}

func (t *notifyTx) Group(signature string) ([]byte, error) {
	var state []byte
	err := t.tx.QueryRowContext(t.ctx, `SELECT state FROM groups WHERE signature = ?`, signature).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return state, FormatError(err)
}

func (t *notifyTx) SaveGroup(signature string, pending int64, state []byte) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO groups (signature, pending, state) VALUES (?, ?, ?)
		ON CONFLICT (signature) DO UPDATE SET pending = excluded.pending, state = excluded.state`,
		signature, pending, state)
	return FormatError(err)
}

// PendingGroups reads the groups with crashes to summarise. Their number is
// bounded by the groups that crashed within one digest interval.
func (t *notifyTx) PendingGroups() ([][]byte, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT state FROM groups WHERE pending > 0`)
	if err != nil {
		return nil, FormatError(err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var state []byte
		if err := rows.Scan(&state); err != nil {
			return nil, FormatError(err)
		}
		out = append(out, state)
	}
	return out, FormatError(rows.Err())
}

func (t *notifyTx) Enqueue(signature string, message []byte) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO outbox (signature, message) VALUES (?, ?)`, signature, message)
	return FormatError(err)
}

func (t *notifyTx) Dequeue(seq int64) error {
	_, err := t.tx.ExecContext(t.ctx, `DELETE FROM outbox WHERE seq = ?`, seq)
	return FormatError(err)
}

func (t *notifyTx) Meta(key string) (string, bool, error) {
	var v string
	err := t.tx.QueryRowContext(t.ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, FormatError(err)
	}
	return v, true, nil
}

func (t *notifyTx) SetMeta(key, value string) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return FormatError(err)
}

func (t *notifyTx) AddMeta(key string, n int64) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + ?`, key, n, n)
	return FormatError(err)
}

func (t *notifyTx) DeleteMeta(key string) error {
	_, err := t.tx.ExecContext(t.ctx, `DELETE FROM meta WHERE key = ?`, key)
	return FormatError(err)
}
