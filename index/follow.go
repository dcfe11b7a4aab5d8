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
		f.handle(ctx, log, msg)
		f.lastMessage.Store(time.Now().UnixNano())
	}
}

func (f *Follower) handle(ctx context.Context, log *slog.Logger, msg corepipe.Message) {
	var r corepipe.Report
	if err := json.Unmarshal(msg.Data(), &r); err != nil || corepipe.CheckID(r.ID) != nil {
		log.Error("unreadable report message skipped", "err", err)
		msg.Term(ctx)
		f.handled.Add(1)
		return
	}
	var err error
	if r.Status == corepipe.StatusDeleted {
		err = f.forget(ctx, r.ID)
	} else {
		err = f.Index.Upsert(ctx, &r)
	}
	if err != nil {
		log.Warn("index report, will retry", corepipe.LogKeyCrash, r.ID, "err", err)
		msg.Nak(ctx, time.Second)
		return
	}
	if err := msg.Ack(ctx); err != nil {
		log.Warn("ack report", corepipe.LogKeyCrash, r.ID, "err", err)
	}
	f.indexed.Add(1)
	f.handled.Add(1)
	log.Debug("report indexed", corepipe.LogKeyCrash, r.ID, "status", r.Status)
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
