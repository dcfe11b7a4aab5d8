// Package notify decides which crashes people hear about and when: one
// message when a crash group is new, regressed or spiking, a cool-down per
// group so that a crash loop is one message, and follow-ups or a periodic
// digest for everything else. It remembers its decisions in SQLite, so that
// across restarts nothing is missed or announced twice; a Sender
// (notify/slack) renders and delivers the messages.
//
// Delivery is at least once: a message is removed from the outbox only
// after the Sender accepted it, so a notifier killed between the two sends
// that message again when it restarts. A duplicate in that window of
// milliseconds is better than a new crash nobody heard about.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/settings"
	"github.com/corepipe/corepipe/internal/tick"
)

// Config configures a Notifier.
type Config struct {
	// Consumer is a durable consumer of the reports stream. Run one
	// notifier per durable and state file: two would announce everything
	// twice.
	Consumer corepipe.Consumer
	Sender   Sender
	// Store is the notifier's memory; the Notifier closes it.
	Store Store
	// Triage is what people decided about groups: ignored groups stay
	// silent, resolved ones speak when they regress. Nil: no triage.
	Triage TriageSource
	// Owners name the owner of a group nobody assigned, from its crash,
	// as the API's index does (--owners); nil names none.
	Owners *corepipe.OwnerRules
	Policy Policy
	// Now is the clock of cool-downs and digests; default time.Now.
	Now func() time.Time
	// Poll is how often the digest is considered and failed state writes
	// are retried (default 5s).
	Poll time.Duration
	// Logger receives the notifier's log; nil discards it.
	Logger *slog.Logger
	// Registerer receives the notifier's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Notifier turns the reports stream into messages.
type Notifier struct {
	cfg    Config
	policy Policy
	log    *slog.Logger
	state  *state
	m      *metrics
	// wake tells the delivery loop that the outbox has a new message.
	wake     chan struct{}
	outboxMu sync.Mutex
}

// handledRetention is how long the IDs of handled crashes are kept: longer
// than the reports stream keeps summaries (90 days by default), after which
// no redelivery can bring them back.
const handledRetention = 100 * 24 * time.Hour

// Open makes a Notifier of cfg. It owns cfg.Store from then on, even when
// it fails.
func Open(cfg Config) (*Notifier, error) {
	if cfg.Consumer == nil || cfg.Sender == nil || cfg.Store == nil {
		if cfg.Store != nil {
			cfg.Store.Close()
		}
		return nil, errors.New("notify: a consumer, a sender and a store are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	settings.Default(&cfg.Poll, 5*time.Second)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		cfg.Store.Close()
		return nil, fmt.Errorf("notify: %w", err)
	}
	return &Notifier{
		cfg:    cfg,
		policy: cfg.Policy.withDefaults(),
		log:    log,
		state:  &state{store: cfg.Store, triage: cfg.Triage, owners: cfg.Owners},
		m:      m,
		wake:   make(chan struct{}, 1),
	}, nil
}

// Close releases the state. Call it after Run has returned.
func (n *Notifier) Close() error { return n.state.close() }

// Run consumes reports, makes digests and delivers messages until ctx is
// cancelled, and then returns nil. Slack being down delays messages, never
// the consumption of reports: decisions are queued in the state and
// delivered in order.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { n.deliver(ctx) })
	wg.Go(func() { n.digests(ctx) })
	n.consume(ctx)
	wg.Wait()
	return nil
}

func (n *Notifier) consume(ctx context.Context) {
	for {
		msg, err := n.cfg.Consumer.Next(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			n.log.Warn("fetch report", "err", err)
			n.pause(ctx)
			continue
		}
		n.handle(ctx, msg)
	}
}

// handle records the decision about one report and only then acks it.
func (n *Notifier) handle(ctx context.Context, msg corepipe.Message) {
	var r corepipe.Report
	if err := json.Unmarshal(msg.Data(), &r); err != nil || corepipe.CheckID(r.ID) != nil {
		n.log.Error("unreadable report message skipped", "err", err)
		msg.Term(ctx)
		return
	}
	log := n.log.With(corepipe.LogKeyCrash, r.ID)
	if r.Status == corepipe.StatusPending || r.Status == corepipe.StatusDeleted {
		// A pending report's analysed or failed one follows; a deleted
		// one is retention's, nothing to tell.
		n.ack(ctx, log, msg)
		return
	}
	out, err := n.state.handle(ctx, n.policy, &r, n.cfg.Now())
	if err != nil {
		log.Warn("record report, will retry", "err", err)
		msg.Nak(ctx, n.cfg.Poll)
		return
	}
	n.ack(ctx, log, msg)
	switch {
	case out.duplicate:
		n.m.duplicates.Inc()
		log.Debug("report already handled")
	case out.kind != "":
		log.Info("crash to announce", "kind", out.kind, "signature", r.Signature)
		n.poke()
	default:
		n.m.suppressed.WithLabelValues(out.reason).Inc()
		log.Debug("crash not announced on its own", "reason", out.reason, "signature", r.Signature)
	}
}

func (n *Notifier) ack(ctx context.Context, log *slog.Logger, msg corepipe.Message) {
	// A lost ack is harmless: the redelivery is recognised as handled.
	if err := msg.Ack(ctx); err != nil {
		log.Warn("ack report", "err", err)
	}
}

// digests makes a digest whenever one is due by the notifier's clock.
func (n *Notifier) digests(ctx context.Context) {
	tick.Every(ctx, n.cfg.Poll, func() { n.digest(ctx) })
}

// digest makes a digest if one is due, and prunes what was handled long ago.
func (n *Notifier) digest(ctx context.Context) {
	now := n.cfg.Now()
	queued, err := n.state.digest(ctx, n.policy, now, n.cfg.Sender.Threads())
	if err != nil && ctx.Err() == nil {
		n.log.Error("make digest", "err", err)
	}
	if queued {
		n.updateOutbox(ctx)
		n.poke()
	}
	if err == nil {
		n.m.lastDigest.Set(float64(now.UnixNano()) / 1e9)
	}
	if err := n.state.pruneHandled(ctx, now.Add(-handledRetention)); err != nil && ctx.Err() == nil {
		n.log.Warn("prune state", "err", err)
	}
}

// deliver sends the outbox in order, one message at a time.
func (n *Notifier) deliver(ctx context.Context) {
	for ctx.Err() == nil {
		n.updateOutbox(ctx)
		q, err := n.state.next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				n.log.Error("read outbox", "err", err)
			}
			n.pause(ctx)
			continue
		}
		if q == nil {
			select {
			case <-ctx.Done():
			case <-n.wake:
			case <-time.After(n.cfg.Poll):
			}
			continue
		}
		log := n.log.With("kind", q.msg.Kind)
		if r := q.msg.Report; r != nil {
			log = log.With(corepipe.LogKeyCrash, r.ID)
		}
		thread, err := n.cfg.Sender.Send(ctx, &q.msg)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, corepipe.ErrInvalid):
			n.m.failed.WithLabelValues(string(q.msg.Kind)).Inc()
			log.Error("message refused, dropped", "err", err)
		case err != nil:
			log.Warn("deliver message, will retry", "err", err)
			n.pause(ctx)
			continue
		default:
			n.m.sent.WithLabelValues(string(q.msg.Kind)).Inc()
			log.Info("message sent")
		}
		n.finish(ctx, log, q, thread)
	}
}

// finish records a delivery. It outlives a cancelled ctx for a moment: the
// message has gone out, and recording it now is what keeps a restart from
// sending it again.
func (n *Notifier) finish(ctx context.Context, log *slog.Logger, q *queued, thread string) {
	for {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err := n.state.finish(fctx, q, thread)
		cancel()
		if err == nil {
			return
		}
		log.Error("record delivery", "err", err)
		if ctx.Err() != nil {
			return
		}
		n.pause(ctx)
	}
}

// updateOutbox sets the outbox gauge. The lock keeps a count read before
// a digest from overwriting one read after it.
func (n *Notifier) updateOutbox(ctx context.Context) {
	n.outboxMu.Lock()
	defer n.outboxMu.Unlock()
	if l, err := n.state.outboxLen(ctx); err == nil {
		n.m.outbox.Set(float64(l))
	}
}

func (n *Notifier) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *Notifier) pause(ctx context.Context) {
	t := time.NewTimer(n.cfg.Poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
