package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// dbtx is what the index's writing steps run statements on: a transaction,
// or the statements a writer prepared on one. It is a querier that also
// writes and reads many rows.
type dbtx interface {
	querier
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// statements are the writing steps' queries prepared on the index's pool,
// each once per connection and kept across transactions. A query run
// without preparing is parsed and planned on every call: indexing a batch
// loads and saves each of its groups, and that parsing was a tenth of what
// ingest cost.
type statements struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func (s *statements) get(ctx context.Context, query string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.m[query]; st != nil {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.m == nil {
		s.m = map[string]*sql.Stmt{}
	}
	s.m[query] = st
	return st, nil
}

func (s *statements) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.m {
		st.Close()
	}
	s.m = nil
}

// prepared runs each query of one transaction on a statement prepared for
// it: the shared one when there is a pool (database/sql reuses what it
// prepared on the transaction's connection), else one prepared on the
// transaction for its life.
type prepared struct {
	tx     *sql.Tx
	shared *statements // nil: prepare on tx
	m      map[string]*sql.Stmt
}

func newPrepared(tx *sql.Tx, shared *statements) *prepared {
	return &prepared{tx: tx, shared: shared, m: map[string]*sql.Stmt{}}
}

func (p *prepared) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st := p.m[query]; st != nil {
		return st, nil
	}
	var st *sql.Stmt
	if p.shared != nil {
		parent, err := p.shared.get(ctx, query)
		if err != nil {
			return nil, err
		}
		st = p.tx.StmtContext(ctx, parent)
	} else {
		var err error
		if st, err = p.tx.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
	}
	p.m[query] = st
	return st, nil
}

func (p *prepared) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (p *prepared) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext of a query that does not prepare runs it unprepared, so
// that the row carries the error, as sql.Row has no other way to.
func (p *prepared) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return p.tx.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}
