// Package nats is the NATS JetStream adapter of corepipe.Queue: crash
// manifests travel on a work-queue stream from agents to analyzers, report
// summaries on a limits stream to the index and the notifier. It also runs
// the in-process nats-server that `corepipe dev` and the tests use.
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corepipe/corepipe"
)

// Stream names and subject prefixes, as design.md fixes them.
const (
	CoresStream    = "COREPIPE_CORES"
	ReportsStream  = "COREPIPE_REPORTS"
	CoresSubject   = "corepipe.cores."
	ReportsSubject = "corepipe.reports."
)

// Queue is a corepipe.Queue on one NATS connection. It is safe for
// concurrent use.
type Queue struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts options
	log  *slog.Logger

	// ctx is cancelled by Close so that pending Next calls return instead of
	// waiting for a pull that can no longer be answered.
	ctx    context.Context
	cancel context.CancelFunc
	closed chan struct{}

	// streamsLock is a one-slot semaphore rather than a mutex so that a
	// caller waiting behind a slow stream creation still honours its ctx.
	streamsLock  chan struct{}
	streamsReady bool
}

var _ corepipe.Queue = (*Queue)(nil)

// Open connects to the NATS server(s) at urls (comma-separated for a cluster)
// and creates or updates the COREPIPE_CORES and COREPIPE_REPORTS streams.
// The connection reconnects forever with backoff. With
// RetryOnFailedConnect(true), Open succeeds while no server is reachable and
// the streams are created once one is.
func Open(ctx context.Context, urls string, opts ...Option) (*Queue, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	q := &Queue{
		opts:        o,
		log:         o.logger,
		closed:      make(chan struct{}),
		streamsLock: make(chan struct{}, 1),
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())

	nopts := []nats.Option{
		nats.Name(o.name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		// Acks and publishes made during a short outage wait here and go
		// out on reconnect; a publish whose ctx ends first reports
		// ErrUnavailable, and its late copy is dropped as a duplicate.
		nats.ReconnectBufSize(8 << 20),
		// A server lost without closing TCP (a dead node) is noticed in
		// about a minute instead of nats.go's default of several.
		nats.PingInterval(20 * time.Second),
		nats.RetryOnFailedConnect(o.retryOnFailedConnect),
	}
	nopts = append(nopts, o.natsOptions...)
	// The lifecycle handlers come last: Close depends on the closed handler.
	nopts = append(nopts,
		nats.ConnectHandler(func(nc *nats.Conn) {
			q.log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				q.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			q.log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				q.log.Error("nats async error", "subject", sub.Subject, "err", err)
				return
			}
			q.log.Error("nats async error", "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(q.closed) }),
	)

	nc, err := nats.Connect(urls, nopts...)
	if err != nil {
		q.cancel()
		return nil, wrapErr("connect to "+redactURLs(urls), err)
	}
	q.nc = nc
	q.js, err = jetstream.New(nc, jetstream.WithDefaultTimeout(o.requestTimeout))
	if err != nil {
		q.abort()
		return nil, fmt.Errorf("queue: jetstream: %w", err)
	}
	if nc.IsConnected() {
		err := q.ensureStreams(ctx)
		if err != nil && !(o.retryOnFailedConnect && errors.Is(err, corepipe.ErrUnavailable)) {
			q.abort()
			return nil, err
		}
	}
	return q, nil
}

// Close stops pending Next calls, then drains the connection so that acks
// and publishes already sent reach the server. If ctx ends first the
// connection is closed at once.
func (q *Queue) Close(ctx context.Context) error {
	q.cancel()
	switch err := q.nc.Drain(); {
	case errors.Is(err, nats.ErrConnectionClosed):
		return nil
	case errors.Is(err, nats.ErrConnectionReconnecting):
		// Nothing can be flushed without a server; Drain has closed it.
		<-q.closed
		return nil
	case err != nil:
		q.abort()
		return fmt.Errorf("queue: close: drain: %w", err)
	}
	select {
	case <-q.closed:
		return nil
	case <-ctx.Done():
		q.abort()
		return fmt.Errorf("queue: close: drain: %w", ctx.Err())
	}
}

// abort closes the connection without draining and waits for it, so that no
// nats.go goroutine outlives the Queue.
func (q *Queue) abort() {
	q.cancel()
	q.nc.Close()
	<-q.closed
}

// PublishCrash queues c for analysis on corepipe.cores.<node>. The crash ID
// is the message ID, so a retry within the duplicate window is dropped by
// the server. It returns once the server has stored the message.
func (q *Queue) PublishCrash(ctx context.Context, c *corepipe.Crash) error {
	if c == nil {
		return fmt.Errorf("queue: publish crash: %w: nil crash", corepipe.ErrInvalid)
	}
	if err := corepipe.CheckID(c.ID); err != nil {
		return fmt.Errorf("queue: publish crash: %w", err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("queue: publish crash %s: %w", c.ID, err)
	}
	return q.publish(ctx, CoresStream, CoresSubject+SubjectToken(c.Node), c.ID, data)
}

// PublishReport announces the stored report r on corepipe.reports.<id> with
// its summary as the body. The message ID includes the status and the
// revision, so that a retry is dropped but a re-analysis is not.
func (q *Queue) PublishReport(ctx context.Context, r *corepipe.Report) error {
	if r == nil {
		return fmt.Errorf("queue: publish report: %w: nil report", corepipe.ErrInvalid)
	}
	if err := corepipe.CheckID(r.ID); err != nil {
		return fmt.Errorf("queue: publish report: %w", err)
	}
	data, err := json.Marshal(r.Summary())
	if err != nil {
		return fmt.Errorf("queue: publish report %s: %w", r.ID, err)
	}
	msgID := r.ID + "." + string(r.Status)
	if r.Revision > 0 {
		msgID += ".r" + strconv.Itoa(r.Revision)
	}
	return q.publish(ctx, ReportsStream, ReportsSubject+r.ID, msgID, data)
}

func (q *Queue) publish(ctx context.Context, stream, subject, msgID string, data []byte) error {
	if err := q.ensureStreams(ctx); err != nil {
		return err
	}
	_, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data},
		jetstream.WithMsgID(msgID), jetstream.WithExpectStream(stream))
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			// Nothing listens on the subject: the server may have lost its
			// state. Recreate the streams on the next call.
			q.forgetStreams()
		}
		return wrapErr("publish "+msgID+" to "+subject, err)
	}
	return nil
}

// ensureStreams creates or updates both streams once per Queue, or again
// after forgetStreams.
func (q *Queue) ensureStreams(ctx context.Context) error {
	select {
	case q.streamsLock <- struct{}{}:
	case <-ctx.Done():
		return wrapErr("create streams", ctx.Err())
	}
	defer func() { <-q.streamsLock }()
	if q.streamsReady {
		return nil
	}
	if err := q.createStreams(ctx); err != nil {
		return err
	}
	q.streamsReady = true
	return nil
}

func (q *Queue) forgetStreams() {
	q.streamsLock <- struct{}{}
	q.streamsReady = false
	<-q.streamsLock
}

func (q *Queue) createStreams(ctx context.Context) error {
	configs := []jetstream.StreamConfig{{
		Name:        CoresStream,
		Description: "corepipe: captured crashes waiting for analysis",
		Subjects:    []string{CoresSubject + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  q.opts.duplicateWindow,
		Replicas:    q.opts.replicas,
	}, {
		Name:        ReportsStream,
		Description: "corepipe: summaries of stored reports",
		Subjects:    []string{ReportsSubject + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      q.opts.reportsMaxAge,
		Replicas:    q.opts.replicas,
	}}
	for _, cfg := range configs {
		if _, err := q.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return wrapErr("create stream "+cfg.Name, err)
		}
	}
	return nil
}

// SubjectToken turns a node name into a single subject token. NATS would
// split a hostname at its dots, and '*' and '>' are wildcards, so anything
// outside [A-Za-z0-9_-] becomes '_'.
func SubjectToken(s string) string { return token(s, "") }

// token keeps s's ASCII letters and digits, '-', '_' and the runes of also,
// and turns every other rune into '_'; an empty s becomes "_".
func token(s, also string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', strings.ContainsRune(also, r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// keyValue creates or updates a KV bucket that keeps one value a key on
// disk, replicated as the queue's streams are: the lease and the core quota.
func (q *Queue) keyValue(ctx context.Context, bucket, description string, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: description,
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    q.opts.replicas,
	})
	if err != nil {
		return nil, wrapErr("create bucket "+bucket, err)
	}
	return kv, nil
}

// reconnectDelay backs off exponentially from 100ms to 5s, with jitter so
// that a fleet of agents does not reconnect in lockstep after an outage.
func reconnectDelay(attempts int) time.Duration {
	d := 5 * time.Second
	if attempts < 6 {
		d = min(d, 100*time.Millisecond<<attempts)
	}
	return d + rand.N(d/5+1)
}

// wrapErr adds context to err and marks the failures a caller should retry
// later as corepipe.ErrUnavailable.
func wrapErr(op string, err error) error {
	if transient(err) {
		return fmt.Errorf("queue: %s: %w: %w", op, corepipe.ErrUnavailable, err)
	}
	return fmt.Errorf("queue: %s: %w", op, err)
}

func transient(err error) bool {
	for _, target := range []error{
		context.DeadlineExceeded,
		nats.ErrTimeout,
		nats.ErrNoResponders,
		nats.ErrNoServers,
		nats.ErrDisconnected,
		nats.ErrConnectionReconnecting,
		nats.ErrReconnectBufExceeded,
		jetstream.ErrNoStreamResponse,
		jetstream.ErrNoHeartbeat,
		jetstream.ErrJetStreamNotEnabled,
		jetstream.ErrServerShutdown,
		jetstream.ErrConsumerLeadershipChanged,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 503 {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// redactURLs hides passwords in a comma-separated server list before it goes
// into an error message.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}
