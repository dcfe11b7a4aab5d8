package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corepipe/corepipe"
)

// The fleet's core policy lives beside the crash streams: a KV bucket of
// per-(key, window) counters that every agent updates with compare-and-set,
// and a stream of core requests, one subject per node.
const (
	QuotaBucket     = "COREPIPE_CORE_QUOTA"
	RequestsStream  = "COREPIPE_REQUESTS"
	RequestsSubject = "corepipe.requests."
)

// CoreQuota admits the first N cores per key and window across the fleet.
// A counter is only ever raised by a compare-and-set on its last revision,
// so agents racing on the same key cannot admit more than N between them.
type CoreQuota struct {
	q      *Queue
	n      int
	window time.Duration
	kv     jetstream.KeyValue
}

// CoreQuota returns the fleet-wide quota of n cores per key and window.
func (q *Queue) CoreQuota(n int, window time.Duration) (*CoreQuota, error) {
	if n < 0 {
		return nil, fmt.Errorf("queue: core quota: %w: negative count %d", corepipe.ErrInvalid, n)
	}
	if window <= 0 {
		return nil, fmt.Errorf("queue: core quota: %w: window %s must be positive", corepipe.ErrInvalid, window)
	}
	return &CoreQuota{q: q, n: n, window: window}, nil
}

func (c *CoreQuota) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	if c.kv != nil {
		return c.kv, nil
	}
	// A counter is worthless once its window has ended.
	kv, err := c.q.keyValue(ctx, QuotaBucket, "corepipe: cores uploaded per decision key and window", 2*c.window)
	if err != nil {
		return nil, err
	}
	c.kv = kv
	return kv, nil
}

// Admit counts one core under key in the current window and reports whether
// it is within the quota. It fails (ErrUnavailable) when NATS does not
// answer within ctx; the caller decides how to degrade.
func (c *CoreQuota) Admit(ctx context.Context, key string) (bool, error) {
	if c.n == 0 {
		return false, nil
	}
	kv, err := c.bucket(ctx)
	if err != nil {
		return false, err
	}
	k := kvKey(key) + "." + strconv.FormatInt(time.Now().UnixNano()/int64(c.window), 10)
	for {
		entry, err := kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = kv.Create(ctx, k, []byte("1"))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // another agent counted first
			}
			if err != nil {
				return false, wrapErr("count core "+k, err)
			}
			return true, nil
		case err != nil:
			return false, wrapErr("read core count "+k, err)
		}
		count, err := strconv.Atoi(string(entry.Value()))
		if err != nil {
			return false, fmt.Errorf("queue: core count %s: %w: %q", k, corepipe.ErrInvalid, entry.Value())
		}
		if count >= c.n {
			return false, nil
		}
		_, err = kv.Update(ctx, k, []byte(strconv.Itoa(count+1)), entry.Revision())
		if err == nil {
			return true, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			continue // lost the race: read the new count
		}
		return false, wrapErr("count core "+k, err)
	}
}

// kvKey keeps a decision key within the KV key alphabet.
func kvKey(s string) string { return token(s, "=") }

// RepublishCrash queues c again for analysis: once its core has been
// stored on request, or for a re-analysis (corepipe reanalyze). why names
// this publish, and becomes part of its message ID: a retry of the same
// publish is dropped, while the first publish's ID (the crash ID), which
// the duplicate window remembers for a day, does not stop it.
func (q *Queue) RepublishCrash(ctx context.Context, c *corepipe.Crash, why string) error {
	if c == nil {
		return fmt.Errorf("queue: republish crash: %w: nil crash", corepipe.ErrInvalid)
	}
	if err := corepipe.CheckID(c.ID); err != nil {
		return fmt.Errorf("queue: republish crash: %w", err)
	}
	if why == "" || kvKey(why) != why {
		return fmt.Errorf("queue: republish crash %s: %w: reason %q is not a message ID token", c.ID, corepipe.ErrInvalid, why)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("queue: republish crash %s: %w", c.ID, err)
	}
	return q.publish(ctx, CoresStream, CoresSubject+SubjectToken(c.Node), c.ID+"."+why, data)
}

// CoreRequest is a debugger's request for the core of crash ID.
type CoreRequest struct {
	ID   string `json:"id"`
	Node string `json:"node"`
	msg  jetstream.Msg
}

// Ack marks the request handled: the core was uploaded, or is gone.
func (r CoreRequest) Ack() error { return r.msg.Ack() }

func (q *Queue) ensureRequests(ctx context.Context) (jetstream.Stream, error) {
	s, err := q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        RequestsStream,
		Description: "corepipe: debuggers' requests for cores kept on nodes",
		Subjects:    []string{RequestsSubject + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  q.opts.duplicateWindow,
		Replicas:    q.opts.replicas,
		// A request outliving every node's core TTL can no longer be met.
		MaxAge: 7 * 24 * time.Hour,
	})
	if err != nil {
		return nil, wrapErr("create stream "+RequestsStream, err)
	}
	return s, nil
}

// RequestCore asks the agent of node to upload the core of crash id. The
// request waits in the stream while that agent is away.
func (q *Queue) RequestCore(ctx context.Context, node, id string) error {
	if err := corepipe.CheckID(id); err != nil {
		return fmt.Errorf("queue: request core: %w", err)
	}
	if _, err := q.ensureRequests(ctx); err != nil {
		return err
	}
	data, err := json.Marshal(CoreRequest{ID: id, Node: node})
	if err != nil {
		return fmt.Errorf("queue: request core %s: %w", id, err)
	}
	_, err = q.js.PublishMsg(ctx, &nats.Msg{Subject: RequestsSubject + SubjectToken(node), Data: data},
		jetstream.WithMsgID("request."+id), jetstream.WithExpectStream(RequestsStream))
	if err != nil {
		return wrapErr("request core "+id, err)
	}
	return nil
}

// CoreRequests delivers the requests addressed to node until ctx ends; the
// handler acks each one it has dealt with, and an unacked one comes back.
func (q *Queue) CoreRequests(ctx context.Context, node string, handle func(context.Context, CoreRequest)) error {
	s, err := q.ensureRequests(ctx)
	if err != nil {
		return err
	}
	name := "agent-" + SubjectToken(node)
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: RequestsSubject + SubjectToken(node),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.opts.ackWait,
	})
	if err != nil {
		return wrapErr("create consumer "+name, err)
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			q.log.Warn("fetch core requests", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for m := range batch.Messages() {
			var r CoreRequest
			if err := json.Unmarshal(m.Data(), &r); err != nil || corepipe.CheckID(r.ID) != nil {
				q.log.Warn("malformed core request dropped", "subject", m.Subject())
				_ = m.Term()
				continue
			}
			r.msg = m
			handle(ctx, r)
		}
	}
	return nil
}
