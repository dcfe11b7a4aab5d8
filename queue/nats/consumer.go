package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corepipe/corepipe"
)

// maxPull bounds one pull request, so that the server forgets a pull from a
// client that went away without waiting for an hour-long ctx to end.
const maxPull = 30 * time.Second

// Crashes returns the durable work-queue consumer of captured crashes. All
// analyzers share one durable name; each crash goes to one of them at a time.
func (q *Queue) Crashes(ctx context.Context, durable string) (corepipe.Consumer, error) {
	return q.consumer(ctx, CoresStream, jetstream.ConsumerConfig{
		Durable:     durable,
		Description: "corepipe: analyzers",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     q.opts.ackWait,
		MaxDeliver:  q.opts.maxDeliver,
	})
}

// Reports returns a durable consumer of report summaries. A new durable name
// starts from the first report the stream still holds, so an index built
// from scratch sees the whole history.
func (q *Queue) Reports(ctx context.Context, durable string) (corepipe.Consumer, error) {
	return q.consumer(ctx, ReportsStream, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "corepipe: report readers",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
}

func (q *Queue) consumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (corepipe.Consumer, error) {
	if cfg.Durable == "" || strings.ContainsAny(cfg.Durable, ".*> \t\r\n") {
		return nil, fmt.Errorf("queue: consumer %q: %w: not a durable name", cfg.Durable, corepipe.ErrInvalid)
	}
	c := &consumer{q: q, stream: stream, cfg: cfg}
	switch _, err := c.current(ctx); {
	case errors.Is(err, corepipe.ErrUnavailable) && q.opts.retryOnFailedConnect:
		// A cluster electing its leaders, or a server down, at start: Next
		// creates the stream and the consumer once JetStream answers, as
		// it does after an outage later.
		q.log.Warn("nats consumer not created yet, retrying", "stream", stream, "durable", cfg.Durable, "err", err)
	case err != nil:
		return nil, err
	}
	return c, nil
}

// consumer is a corepipe.Consumer over a JetStream durable pull consumer. It
// recreates the durable when the server no longer knows it (deleted by hand,
// or a server that lost its state), so analyzers do not wait forever on a
// consumer that is gone.
type consumer struct {
	q      *Queue
	stream string
	cfg    jetstream.ConsumerConfig

	mu sync.Mutex
	jc jetstream.Consumer // nil until (re)created
}

// current returns the JetStream consumer, creating it and its stream first
// when needed.
func (c *consumer) current(ctx context.Context) (jetstream.Consumer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jc != nil {
		return c.jc, nil
	}
	if err := c.q.ensureStreams(ctx); err != nil {
		return nil, err
	}
	jc, err := c.q.js.CreateOrUpdateConsumer(ctx, c.stream, c.cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// The server lost the stream since this Queue created it.
		c.q.forgetStreams()
		if err := c.q.ensureStreams(ctx); err != nil {
			return nil, err
		}
		jc, err = c.q.js.CreateOrUpdateConsumer(ctx, c.stream, c.cfg)
	}
	if err != nil {
		return nil, wrapErr(fmt.Sprintf("create consumer %s on %s", c.cfg.Durable, c.stream), err)
	}
	c.jc = jc
	return jc, nil
}

func (c *consumer) forget(jc jetstream.Consumer) {
	c.mu.Lock()
	if c.jc == jc {
		c.jc = nil
	}
	c.mu.Unlock()
}

// Pending is how many messages of the stream this consumer has not
// acknowledged yet: those not delivered and those delivered but not acked.
// The index uses it to tell when it has caught up with the stream.
func (c *consumer) Pending(ctx context.Context) (uint64, error) {
	jc, err := c.current(ctx)
	if err != nil {
		return 0, err
	}
	info, err := jc.Info(ctx)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c.forget(jc)
	}
	if err != nil {
		return 0, wrapErr("consumer info "+c.cfg.Durable, err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// Next waits for the next message. Server restarts and reconnects are waited
// out; it returns an error only when ctx ends or the Queue is closed. A
// message the server sent just as ctx ended is not lost: it is delivered
// again after AckWait.
func (c *consumer) Next(ctx context.Context) (corepipe.Message, error) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.q.ctx.Err() != nil {
			return nil, fmt.Errorf("queue: next from %s: %w", c.cfg.Durable, nats.ErrConnectionClosed)
		}
		msg, err := c.pull(ctx)
		switch {
		case msg != nil:
			return msg, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, nats.ErrConnectionClosed):
			return nil, fmt.Errorf("queue: next from %s: %w", c.cfg.Durable, err)
		case err == nil:
			backoff = minBackoff
			continue
		}
		c.q.log.Warn("nats pull failed, retrying", "stream", c.stream, "durable", c.cfg.Durable, "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-c.q.ctx.Done():
		}
		t.Stop()
		backoff = min(2*backoff, maxBackoff)
	}
}

// FetchReady returns up to max messages that the server has ready now,
// without waiting for more: none when nothing is. The index follower takes
// a backlog this way, to index it a batch at a time.
func (c *consumer) FetchReady(ctx context.Context, max int) ([]corepipe.Message, error) {
	jc, err := c.current(ctx)
	if err != nil {
		return nil, err
	}
	batch, err := jc.FetchNoWait(max)
	if err != nil {
		return nil, wrapErr("fetch from "+c.cfg.Durable, err)
	}
	var out []corepipe.Message
	for m := range batch.Messages() {
		msg, err := newMessage(c.q, m)
		if err != nil {
			// Unacked, it comes again after AckWait.
			return out, fmt.Errorf("queue: fetch from %s: %w", c.cfg.Durable, err)
		}
		out = append(out, msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return out, wrapErr("fetch from "+c.cfg.Durable, err)
	}
	return out, nil
}

// pull makes one pull request of at most maxPull. It returns a message, or
// neither message nor error when the pull expired empty.
func (c *consumer) pull(ctx context.Context) (*message, error) {
	jc, err := c.current(ctx)
	if err != nil {
		return nil, err
	}
	pullCtx, cancel := context.WithTimeout(ctx, maxPull)
	defer cancel()
	// Close cancels the pull rather than leaving it to time out.
	defer context.AfterFunc(c.q.ctx, cancel)()

	m, err := jc.Next(jetstream.FetchContext(pullCtx))
	switch {
	case err == nil:
		msg, err := newMessage(c.q, m)
		if err != nil {
			return nil, fmt.Errorf("queue: next from %s: %w", c.cfg.Durable, err)
		}
		return msg, nil
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return nil, nil
	case errors.Is(err, jetstream.ErrInvalidOption) && deadlinePassed(pullCtx):
		// FetchContext refuses a deadline that has passed before the
		// context's timer has fired: wait for it rather than spin.
		<-pullCtx.Done()
		return nil, nil
	case c.q.ctx.Err() != nil:
		return nil, nats.ErrConnectionClosed
	case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, nats.ErrNoResponders):
		// A pull to a consumer the server does not know is answered by
		// "no responders".
		c.forget(jc)
	}
	return nil, err
}

func deadlinePassed(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// message is a corepipe.Message over a JetStream message.
type message struct {
	q          *Queue
	m          jetstream.Msg
	seq        uint64
	deliveries int
}

var _ corepipe.Message = (*message)(nil)

func newMessage(q *Queue, m jetstream.Msg) (*message, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("message metadata: %w", err)
	}
	return &message{q: q, m: m, seq: md.Sequence.Stream, deliveries: int(md.NumDelivered)}, nil
}

func (m *message) Data() []byte    { return m.m.Data() }
func (m *message) Deliveries() int { return m.deliveries }

// Ack waits for the server to confirm the ack: a crash must not be analysed
// twice because an ack was lost, nor forgotten because one was assumed.
func (m *message) Ack(ctx context.Context) error {
	if err := m.m.DoubleAck(ctx); err != nil {
		return wrapErr(m.op("ack"), err)
	}
	return nil
}

// Nak asks for redelivery after delay (at once when delay is 0).
func (m *message) Nak(ctx context.Context, delay time.Duration) error {
	return m.flushed(ctx, "nak", m.m.NakWithDelay(delay))
}

// InProgress restarts the AckWait timer.
func (m *message) InProgress(ctx context.Context) error {
	return m.flushed(ctx, "in progress", m.m.InProgress())
}

// Term stops redelivery; on the work queue it also removes the message.
func (m *message) Term(ctx context.Context) error {
	return m.flushed(ctx, "term", m.m.Term())
}

// flushed completes a fire-and-forget acknowledgement with a round trip to
// the server, so that a caller relying on InProgress learns when it did not
// arrive.
func (m *message) flushed(ctx context.Context, op string, err error) error {
	if err == nil {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, m.q.opts.requestTimeout)
			defer cancel()
		}
		err = m.q.nc.FlushWithContext(ctx)
	}
	if err != nil {
		return wrapErr(m.op(op), err)
	}
	return nil
}

func (m *message) op(name string) string {
	return fmt.Sprintf("%s %s message %d", name, m.m.Subject(), m.seq)
}
