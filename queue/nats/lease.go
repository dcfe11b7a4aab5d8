package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/corepipe/corepipe"
)

// LeaseBucket holds the cluster's leases: one key per job that one process
// of the cluster does (the retention sweeper), whose value names the holder.
// The bucket's TTL ends the lease of a holder that stopped renewing it.
const LeaseBucket = "COREPIPE_LEASES"

// Lease is one process's claim on a job of the cluster. It is taken with a
// create (only one process can create the key) and renewed with a
// compare-and-set on its last revision (only its holder can), and it lapses
// ttl after the holder's last renewal: a holder that died loses it.
type Lease struct {
	q      *Queue
	name   string
	holder string
	ttl    time.Duration

	mu  sync.Mutex
	kv  jetstream.KeyValue
	rev uint64
}

// Lease returns the lease name (a KV key) for holder, lapsing ttl after
// its last renewal; renew it well within ttl. Every process that competes
// for the lease must give the same ttl: it is the bucket's.
func (q *Queue) Lease(name, holder string, ttl time.Duration) (*Lease, error) {
	switch {
	case name == "" || kvKey(name) != name:
		return nil, fmt.Errorf("queue: lease: %w: name %q", corepipe.ErrInvalid, name)
	case holder == "":
		return nil, fmt.Errorf("queue: lease %s: %w: no holder", name, corepipe.ErrInvalid)
	case ttl < time.Second:
		return nil, fmt.Errorf("queue: lease %s: %w: ttl %s under a second", name, corepipe.ErrInvalid, ttl)
	}
	return &Lease{q: q, name: name, holder: holder, ttl: ttl}, nil
}

func (l *Lease) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	if l.kv != nil {
		return l.kv, nil
	}
	kv, err := l.q.keyValue(ctx, LeaseBucket, "corepipe: which process of the cluster does a job of one (retention)", l.ttl)
	if err != nil {
		return nil, err
	}
	l.kv = kv
	return kv, nil
}

// Hold renews the lease if it is ours, or takes it if nobody holds it, and
// reports whether it is ours now. A holder that lost it (it renewed too
// late and another took it) learns so here, and stops.
func (l *Lease) Hold(ctx context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kv, err := l.bucket(ctx)
	if err != nil {
		return false, err
	}
	if l.rev != 0 {
		rev, err := kv.Update(ctx, l.name, []byte(l.holder), l.rev)
		if err == nil {
			l.rev = rev
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return false, wrapErr("renew lease "+l.name, err)
		}
		l.rev = 0
	}
	rev, err := kv.Create(ctx, l.name, []byte(l.holder))
	if errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err) {
		return false, nil
	}
	if err != nil {
		return false, wrapErr("take lease "+l.name, err)
	}
	l.rev = rev
	return true, nil
}

// Release gives the lease up, if it is ours, so that another process takes
// it at once rather than after its ttl.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev == 0 || l.kv == nil {
		return nil
	}
	err := l.kv.Delete(ctx, l.name, jetstream.LastRevision(l.rev))
	l.rev = 0
	if err != nil && !isWrongSequence(err) {
		return wrapErr("release lease "+l.name, err)
	}
	return nil
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
