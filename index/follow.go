// Package index keeps a report index in step with the reports stream. The
// index itself is an adapter (index/sqlite); this is the loop that feeds it.
package index

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/corepipe/corepipe"
)

// Follower feeds an index from a reports consumer.
type Follower struct {
	Consumer corepipe.Consumer
	Index    corepipe.Index
	Logger   *slog.Logger

	indexed atomic.Int64
}

// Indexed is how many reports have been indexed since Run started.
func (f *Follower) Indexed() int64 { return f.indexed.Load() }

// Run indexes reports until ctx is cancelled. A report is acknowledged only
// once the index holds it, so a restart resumes where it left off.
func (f *Follower) Run(ctx context.Context) error {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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
		var r corepipe.Report
		if err := json.Unmarshal(msg.Data(), &r); err != nil || corepipe.CheckID(r.ID) != nil {
			log.Error("unreadable report message skipped", "err", err)
			msg.Term(ctx)
			continue
		}
		if err := f.Index.Upsert(ctx, &r); err != nil {
			log.Warn("index report, will retry", "crash", r.ID, "err", err)
			msg.Nak(ctx, time.Second)
			continue
		}
		if err := msg.Ack(ctx); err != nil {
			log.Warn("ack report", "crash", r.ID, "err", err)
		}
		f.indexed.Add(1)
		log.Debug("report indexed", "crash", r.ID, "status", r.Status)
	}
}
