package notify

import (
	"context"
	"time"

	"github.com/corepipe/corepipe"
)

// The state's tests run on the real SQLite store, which imports this
// package, so they are external tests; these are their handles on it.

type State = state

const DigestGroups = digestGroups

func NewState(st Store) *State { return &state{store: st} }

func (s *state) Handle(ctx context.Context, p Policy, r *corepipe.Report, now time.Time) error {
	_, err := s.handle(ctx, p, r, now)
	return err
}

func (s *state) Digest(ctx context.Context, p Policy, now time.Time, threads bool) (bool, error) {
	return s.digest(ctx, p, now, threads)
}

func (s *state) Next(ctx context.Context) (*queued, error) { return s.next(ctx) }

func (s *state) Finish(ctx context.Context, q *queued, thread string) error {
	return s.finish(ctx, q, thread)
}

func (q *queued) Msg() Message { return q.msg }

func (p Policy) WithDefaults() Policy { return p.withDefaults() }
