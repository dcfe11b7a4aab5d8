// Package index keeps a report index in step with the reports: the follower
// that feeds it from the reports stream, and the rebuild that refills it from
// the blob store alone. The index itself is an adapter (package sqlite).
package index

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corepipe/corepipe"
)

// IdleReady is how long a follower whose consumer cannot count its backlog
// must go without a report before it calls itself caught up.
const IdleReady = time.Second

// pollInterval is how often a catching-up follower checks its backlog.
const pollInterval = 250 * time.Millisecond

// maxBatch bounds the reports indexed in one transaction: a backlog is
// indexed a batch at a time, each batch acked once it is committed. A
// commit writes every page the batch touched, in each of the index's
// indexes, so a larger batch writes each page for more reports: on ten
// million crashes, 256 a batch indexed 4 000-4 500 reports/s and 1 000
// 5 200-5 500. It stays within JetStream's default MaxAckPending (1 000)
// of a pull consumer.
const maxBatch = 1000

// ackers is how many acks of a batch are in flight at once: each waits for
// the server, and one at a time they would cost more than the batch.
const ackers = 16

// readyFetcher is a consumer that can hand over the messages it has ready
// without waiting for more (queue/nats's consumers can).
type readyFetcher interface {
	FetchReady(ctx context.Context, max int) ([]corepipe.Message, error)
}

// batchIndex is an index that can upsert several reports in one
// transaction, all or none (sqlite.Index can).
type batchIndex interface {
	UpsertBatch(ctx context.Context, rs []*corepipe.Report) error
}

// backlogger is a consumer that can tell how many messages it has not
// acknowledged yet (queue/nats's consumers can).
type backlogger interface {
	Pending(ctx context.Context) (uint64, error)
}

// Follower feeds an index from a reports consumer.
type Follower struct {
	Consumer corepipe.Consumer
	Index    corepipe.Index
	Logger   *slog.Logger

	indexed atomic.Int64
	ready   atomic.Bool
	// handled counts messages done with (indexed or skipped) since Run
	// started; lastMessage is when the latest one arrived (unix nanos).
	handled     atomic.Uint64
	lastMessage atomic.Int64
}

// Indexed is how many reports have been indexed since Run started.
func (f *Follower) Indexed() int64 { return f.indexed.Load() }

// Ready reports whether the index has caught up with the stream: every
// report that was in the stream when Run started is indexed, or the stream
// has nothing left for it. It stays true once it is.
func (f *Follower) Ready() bool { return f.ready.Load() }

// Pending is how many reports in the stream are not indexed yet: the lag of
// the index behind the stream.
func (f *Follower) Pending(ctx context.Context) (uint64, error) {
	b, ok := f.Consumer.(backlogger)
	if !ok {
		return 0, fmt.Errorf("index: %w: the reports consumer cannot count its backlog", corepipe.ErrUnavailable)
	}
	return b.Pending(ctx)
}

// Run indexes reports until ctx is cancelled. A report is acknowledged only
// once the index holds it, so a restart resumes where it left off.
func (f *Follower) Run(ctx context.Context) error {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f.lastMessage.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { f.watchCatchUp(ctx, log) })

	for {
		msg, err := f.Consumer.Next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Warn("fetch report", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		f.lastMessage.Store(time.Now().UnixNano())
		msgs := []corepipe.Message{msg}
		if rf, ok := f.Consumer.(readyFetcher); ok {
			more, err := rf.FetchReady(ctx, maxBatch-1)
			if err != nil {
				log.Warn("fetch the reports ready", "err", err)
			}
			msgs = append(msgs, more...)
		}
		f.handle(ctx, log, msgs)
		f.lastMessage.Store(time.Now().UnixNano())
	}
}

// pending is a report message read and not indexed yet.
type pending struct {
	msg corepipe.Message
	r   *corepipe.Report
}

// handle indexes msgs in order: an unreadable message is terminated, a
// deleted report forgotten, and the runs of reports between them upserted
// a batch at a time.
func (f *Follower) handle(ctx context.Context, log *slog.Logger, msgs []corepipe.Message) {
	var run []pending
	for _, msg := range msgs {
		var r corepipe.Report
		if err := json.Unmarshal(msg.Data(), &r); err != nil || corepipe.CheckID(r.ID) != nil {
			log.Error("unreadable report message skipped", "err", err)
			msg.Term(ctx)
			f.handled.Add(1)
			continue
		}
		if r.Status != corepipe.StatusDeleted {
			run = append(run, pending{msg, &r})
			continue
		}
		f.upsert(ctx, log, run)
		run = nil
		f.done(ctx, log, pending{msg, &r}, f.forget(ctx, r.ID))
	}
	f.upsert(ctx, log, run)
}

// upsert indexes run in one transaction when the index can, then acks each
// message. When the batch fails, each report is indexed alone, so that the
// one that fails is retried alone and does not hold the others back.
func (f *Follower) upsert(ctx context.Context, log *slog.Logger, run []pending) {
	if b, ok := f.Index.(batchIndex); ok && len(run) > 1 {
		rs := make([]*corepipe.Report, len(run))
		for i, p := range run {
			rs[i] = p.r
		}
		err := b.UpsertBatch(ctx, rs)
		if err == nil {
			f.ackAll(ctx, log, run)
			return
		}
		log.Warn("index a batch of reports, indexing them one by one", "reports", len(run), "err", err)
	}
	for _, p := range run {
		f.done(ctx, log, p, f.Index.Upsert(ctx, p.r))
	}
}

// ackAll acks the messages of an indexed batch, several at a time.
func (f *Follower) ackAll(ctx context.Context, log *slog.Logger, run []pending) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, ackers)
	for _, p := range run {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f.done(ctx, log, p, nil)
		})
	}
	wg.Wait()
}

// done acks p once the index holds it (err nil), or asks for it again.
func (f *Follower) done(ctx context.Context, log *slog.Logger, p pending, err error) {
	if err != nil {
		log.Warn("index report, will retry", corepipe.LogKeyCrash, p.r.ID, "err", err)
		p.msg.Nak(ctx, time.Second)
		return
	}
	if err := p.msg.Ack(ctx); err != nil {
		log.Warn("ack report", corepipe.LogKeyCrash, p.r.ID, "err", err)
	}
	f.indexed.Add(1)
	f.handled.Add(1)
	log.Debug("report indexed", corepipe.LogKeyCrash, p.r.ID, "status", p.r.Status)
}

// forget takes out of the index a report that retention deleted, when the
// index can (sqlite.Index can); one that cannot keeps it.
func (f *Follower) forget(ctx context.Context, id string) error {
	if d, ok := f.Index.(interface {
		Delete(ctx context.Context, id string) error
	}); ok {
		return d.Delete(ctx, id)
	}
	return nil
}

// watchCatchUp sets Ready. With a consumer that counts its backlog, the
// follower is caught up when the backlog is empty, or when it has handled as
// many reports as the backlog held at the start (reports keep arriving in a
// busy cluster: the backlog may never be empty). Without one, it is caught
// up after IdleReady without a report.
func (f *Follower) watchCatchUp(ctx context.Context, log *slog.Logger) {
	b, counts := f.Consumer.(backlogger)
	var (
		target   uint64
		measured bool
	)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		caughtUp := false
		if counts {
			n, err := b.Pending(ctx)
			switch {
			case err != nil:
				log.Warn("count the reports not indexed yet", "err", err)
			case n == 0:
				caughtUp = true
			case !measured:
				// Reports handled before this count are not in it.
				target, measured = f.handled.Load()+n, true
			}
			caughtUp = caughtUp || measured && f.handled.Load() >= target
		} else {
			caughtUp = time.Since(time.Unix(0, f.lastMessage.Load())) >= IdleReady
		}
		if caughtUp {
			f.ready.Store(true)
			log.Info("index caught up with the reports stream", "indexed", f.Indexed())
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
