package nats

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Option configures a Queue opened by Open.
type Option func(*options)

type options struct {
	name                 string
	retryOnFailedConnect bool
	duplicateWindow      time.Duration
	reportsMaxAge        time.Duration
	replicas             int
	ackWait              time.Duration
	maxDeliver           int
	requestTimeout       time.Duration
	logger               *slog.Logger
	natsOptions          []nats.Option
}

func defaultOptions() options {
	return options{
		name: "corepipe",
		// An agent cut off from NATS for a day keeps spooling and retries
		// everything when it is back: those retries must still be
		// recognised as duplicates of what got through before the outage.
		duplicateWindow: 24 * time.Hour,
		// Summaries are small, and the index can be rebuilt from the blob
		// store, so the stream only needs to cover a rebuild of recent days.
		reportsMaxAge: 90 * 24 * time.Hour,
		replicas:      1,
		// Long enough for one analysis step between InProgress calls on a
		// loaded node, short enough that a dead analyzer's crash is picked up
		// by another soon.
		ackWait:        2 * time.Minute,
		maxDeliver:     5,
		requestTimeout: 5 * time.Second,
		logger:         slog.New(slog.DiscardHandler),
	}
}

// Name sets the connection name shown by the server's monitoring
// (default "corepipe"). Use the component, e.g. "corepipe-agent/node-1".
func Name(name string) Option { return func(o *options) { o.name = name } }

// RetryOnFailedConnect makes Open succeed while the server is unreachable:
// the connection is retried in the background and the streams are created on
// first use. Publishing fails with ErrUnavailable until the server is up.
// Without it, Open fails when the server cannot be reached.
func RetryOnFailedConnect(retry bool) Option {
	return func(o *options) { o.retryOnFailedConnect = retry }
}

// DuplicateWindow is how long COREPIPE_CORES remembers crash IDs to drop
// repeated publishes of the same crash (default 24h).
func DuplicateWindow(d time.Duration) Option { return func(o *options) { o.duplicateWindow = d } }

// ReportsMaxAge is how long COREPIPE_REPORTS keeps report summaries
// (default 90 days; 0 keeps them forever).
func ReportsMaxAge(d time.Duration) Option { return func(o *options) { o.reportsMaxAge = d } }

// Replicas sets the replication factor of both streams (default 1; use 3 on
// a production cluster).
func Replicas(n int) Option { return func(o *options) { o.replicas = n } }

// AckWait is how long a crash delivered to an analyzer may go without Ack or
// InProgress before it is delivered again (default 2 minutes).
func AckWait(d time.Duration) Option { return func(o *options) { o.ackWait = d } }

// MaxDeliver is how many times a crash is delivered before JetStream stops
// trying (default 5). The analyzer writes a failed report on the last one.
func MaxDeliver(n int) Option { return func(o *options) { o.maxDeliver = n } }

// RequestTimeout bounds publishes, acks and stream management calls made
// with a context that has no deadline (default 5s).
func RequestTimeout(d time.Duration) Option { return func(o *options) { o.requestTimeout = d } }

// Logger receives connection events: disconnects, reconnects, async errors.
func Logger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// NATSOptions adds options to the nats.go connection: credentials, TLS, a
// different reconnect policy. They are applied after corepipe's defaults;
// connection event handlers set here are replaced by the Queue's own, which
// log the events and let Close wait for the connection to end.
func NATSOptions(opts ...nats.Option) Option {
	return func(o *options) { o.natsOptions = append(o.natsOptions, opts...) }
}
