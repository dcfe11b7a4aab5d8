// Package corepipe is the domain of the crash pipeline: the crash manifest the
// collector writes, the report the analyzer produces, and the seams (blob store,
// queue, index) that the adapters in sub-packages implement.
//
// Nothing here imports a technology: adapters import this package, never the
// reverse.
package corepipe

import (
	"context"
	"io"
	"time"
)

// BlobStore holds cores, executables, manifests and reports under the keys
// built by the Key* functions. Writes are idempotent: putting the same key
// twice leaves one object.
type BlobStore interface {
	// Put streams r into key. size is the length of r, or -1 when unknown.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens key for reading. A missing key is ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the size of key. A missing key is ErrNotFound.
	Stat(ctx context.Context, key string) (int64, error)
	// List calls fn for every key under prefix, in lexical order.
	List(ctx context.Context, prefix string, fn func(key string) error) error
}

// BlobDeleter is a BlobStore that deletes, which retention needs (issue 16).
type BlobDeleter interface {
	BlobStore
	// Delete removes key. A missing key is no error: a sweep that stopped
	// half way runs again.
	Delete(ctx context.Context, key string) error
}

// Message is one delivery from a Queue consumer. The queue's semantics are
// JetStream's: nothing is removed until Ack, a message not acked in time is
// delivered again, InProgress extends the deadline.
type Message interface {
	Data() []byte
	// Deliveries is how many times this message has been delivered, 1 first.
	Deliveries() int
	Ack(ctx context.Context) error
	Nak(ctx context.Context, delay time.Duration) error
	InProgress(ctx context.Context) error
	// Term stops redelivery for good.
	Term(ctx context.Context) error
}

// Consumer is a durable pull consumer: it remembers its position across restarts.
type Consumer interface {
	// Next blocks until a message is available or ctx is done.
	Next(ctx context.Context) (Message, error)
}

// Queue carries crash manifests from agents to analyzers and report summaries
// from analyzers to the index and notifier. It carries metadata, never cores.
type Queue interface {
	// PublishCrash queues a captured crash. Publishing the same crash ID twice
	// is deduplicated by the queue.
	PublishCrash(ctx context.Context, c *Crash) error
	// PublishReport announces a stored report.
	PublishReport(ctx context.Context, r *Report) error
	// Crashes is the work queue of captured crashes, shared by all analyzers
	// using the same durable name.
	Crashes(ctx context.Context, durable string) (Consumer, error)
	// Reports is the stream of stored reports, replayed from the start for a
	// new durable name.
	Reports(ctx context.Context, durable string) (Consumer, error)
}

// CrashFilter selects crashes from an Index. Zero fields match everything.
type CrashFilter struct {
	Node      string
	Namespace string
	Pod       string
	Exe       string
	Signature string
	Status    ReportStatus
	// BuildID matches the executable's GNU or Go build ID.
	BuildID string
	// Query is full-text search over titles, panic messages and the
	// functions of the crashing goroutine: every word must match, as a
	// prefix.
	Query  string
	Since  time.Time
	Limit  int
	Cursor string
}

// Index answers queries over stored reports.
type Index interface {
	// Upsert records or replaces the report's summary.
	Upsert(ctx context.Context, r *Report) error
	// Crashes lists summaries newest first, and the cursor of the next page
	// ("" when there is none).
	Crashes(ctx context.Context, f CrashFilter) ([]*Report, string, error)
	// Crash returns the summary of one crash, ErrNotFound when unknown.
	Crash(ctx context.Context, id string) (*Report, error)
}
