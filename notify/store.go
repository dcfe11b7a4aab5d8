package notify

import (
	"context"
	"time"

	"github.com/corepipe/corepipe"
)

// Store is the notifier's durable memory: the groups, the crashes already
// handled, and the outbox of decided messages not yet delivered. Deciding
// and queueing a message is one Update, so an ack never precedes a decision
// and a restart neither repeats nor loses one. The notifier encodes what it
// stores; the store keeps the bytes. sqlite.NotifyStore is one.
type Store interface {
	// Update runs fn in one transaction, committed when fn returns nil.
	Update(ctx context.Context, fn func(StoreTx) error) error
	// Next returns the oldest message in the outbox; false when it is empty.
	Next(ctx context.Context) (Stored, bool, error)
	OutboxLen(ctx context.Context) (int64, error)
	// PruneHandled forgets the crashes captured before t.
	PruneHandled(ctx context.Context, t time.Time) error
	Close() error
}

// StoreTx is what one Update may read and change.
type StoreTx interface {
	// Handled reports whether crash id was handled, and whether it had a
	// signature then.
	Handled(id string) (found, signed bool, err error)
	SetHandled(id string, signed bool, capturedAt time.Time) error
	// Group returns the state saved for a group, nil for a new group.
	Group(signature string) ([]byte, error)
	// SaveGroup saves a group's state with the number of its crashes not
	// yet summarised.
	SaveGroup(signature string, pending int64, state []byte) error
	// PendingGroups returns the states of the groups whose pending count is
	// not zero.
	PendingGroups() ([][]byte, error)
	// Enqueue appends a message to the outbox; signature is "" for digests.
	Enqueue(signature string, message []byte) error
	Dequeue(seq int64) error
	// Meta reads the notifier's own counters and times.
	Meta(key string) (value string, found bool, err error)
	SetMeta(key, value string) error
	// AddMeta adds n to the integer value of key, 0 when it is unset.
	AddMeta(key string, n int64) error
	DeleteMeta(key string) error
}

// TriageSource is where the notifier reads what people decided about a
// group (sqlite.Index is one). Nil means nobody triages: every group is
// open.
type TriageSource interface {
	// Triage returns the decision about a group, nil when there is none.
	Triage(ctx context.Context, signature string) (*corepipe.Triage, error)
}

// Stored is one message of the outbox as the store keeps it.
type Stored struct {
	Seq       int64
	Signature string
	Message   []byte
}
