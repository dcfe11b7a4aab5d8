package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/corepipe/corepipe"
)

// state is the notifier's decisions over its Store.
type state struct {
	store  Store
	triage TriageSource
	owners *corepipe.OwnerRules
}

// Keys of the store's meta records.
const (
	metaLastDigest = "last_digest" // RFC 3339 nanoseconds
	metaUnanalysed = "unanalysed"  // crashes without a group since the last digest
)

func (s *state) close() error { return s.store.Close() }

// outcome is what handle did with one report.
type outcome struct {
	duplicate bool
	kind      Kind   // announced as
	reason    string // or why not
}

// handle decides about report r and records the decision, the handled
// crash and any message in one transaction.
func (s *state) handle(ctx context.Context, p Policy, r *corepipe.Report, now time.Time) (outcome, error) {
	var out outcome
	// Read before the transaction: the decision lives in another file, and
	// a retry of the transaction sees the same one.
	var decision *corepipe.Triage
	if s.triage != nil && r.Signature != "" {
		d, err := s.triage.Triage(ctx, r.Signature)
		if err != nil {
			return outcome{}, fmt.Errorf("read triage of %s: %w", r.Signature, err)
		}
		decision = d
	}
	err := s.store.Update(ctx, func(tx StoreTx) error {
		out = outcome{}
		found, signed, err := tx.Handled(r.ID)
		if err != nil {
			return err
		}
		if found && (signed || r.Signature == "") {
			// A redelivery, or the same crash published again; a failed
			// analysis redone successfully is handled once more, now
			// that it has a group.
			out.duplicate = true
			return nil
		}
		if err := tx.SetHandled(r.ID, r.Signature != "", r.CapturedAt); err != nil {
			return err
		}
		if r.Signature == "" {
			out.reason = reasonSummarised
			if now.Sub(r.CapturedAt) > p.MaxAge {
				out.reason = reasonStale
				return nil
			}
			return tx.AddMeta(metaUnanalysed, 1)
		}
		gs, err := loadGroup(tx, r.Signature)
		if err != nil {
			return err
		}
		out.kind, out.reason = p.decide(gs, r, now, decision)
		if err := saveGroup(tx, gs); err != nil {
			return err
		}
		if out.kind == "" {
			return nil
		}
		g := gs.Group
		if gs.Triage != nil {
			t := *gs.Triage
			g.Triage, g.Assignee = &t, t.Assignee
		}
		if g.Assignee == "" {
			// A person's assignment wins over the rules.
			g.Assignee = s.owners.Owner(r)
		}
		m := &Message{Kind: out.kind, Report: r, Group: &g}
		if out.kind == KindSpike {
			m.Spike = &Spike{Count: p.SpikeCount, Window: p.SpikeWindow}
		}
		return enqueue(tx, r.Signature, m)
	})
	if err != nil {
		return outcome{}, fmt.Errorf("record report %s: %w", r.ID, err)
	}
	return out, nil
}

func loadGroup(tx StoreTx, signature string) (*groupState, error) {
	gs := &groupState{}
	raw, err := tx.Group(signature)
	if err != nil || raw == nil {
		return gs, err
	}
	if err := json.Unmarshal(raw, gs); err != nil {
		return nil, fmt.Errorf("group %s: %w", signature, err)
	}
	return gs, nil
}

func saveGroup(tx StoreTx, gs *groupState) error {
	raw, err := json.Marshal(gs)
	if err != nil {
		return err
	}
	return tx.SaveGroup(gs.Group.Signature, gs.Pending.Count, raw)
}

func enqueue(tx StoreTx, signature string, m *Message) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Enqueue(signature, raw)
}

// digestGroups is how many groups a digest lists; the rest are counted.
const digestGroups = 10

// digest summarises every group's pending crashes, once DigestInterval has
// passed since the last digest: as follow-ups in the groups' threads when
// threads is set and the group has one, in one digest message otherwise.
// It reports whether it queued anything.
func (s *state) digest(ctx context.Context, p Policy, now time.Time, threads bool) (bool, error) {
	queued := false
	err := s.store.Update(ctx, func(tx StoreTx) error {
		queued = false
		last, err := lastDigest(tx, now)
		if err != nil {
			return err
		}
		if now.Sub(last) < p.DigestInterval {
			return nil
		}
		unanalysed, err := metaInt(tx, metaUnanalysed)
		if err != nil {
			return err
		}
		d := &Digest{Since: last, Until: now, Unanalysed: unanalysed}
		pending, err := pendingGroups(tx)
		if err != nil {
			return err
		}
		var rest []Summary
		for _, gs := range pending {
			sum := gs.summary()
			if threads && gs.Thread != "" {
				m := &Message{Kind: KindFollowUp, FollowUp: &sum, Thread: gs.Thread}
				if err := enqueue(tx, sum.Signature, m); err != nil {
					return err
				}
				queued = true
			} else {
				rest = append(rest, sum)
			}
			gs.Pending = Summary{}
			if err := saveGroup(tx, gs); err != nil {
				return err
			}
		}
		sort.SliceStable(rest, func(i, j int) bool { return rest[i].Count > rest[j].Count })
		for i, sum := range rest {
			if i < digestGroups {
				d.Groups = append(d.Groups, sum)
				continue
			}
			d.MoreGroups++
			d.MoreCrashes += sum.Count
		}
		if len(d.Groups) > 0 || d.Unanalysed > 0 {
			if err := enqueue(tx, "", &Message{Kind: KindDigest, Digest: d}); err != nil {
				return err
			}
			queued = true
		}
		if err := tx.DeleteMeta(metaUnanalysed); err != nil {
			return err
		}
		return tx.SetMeta(metaLastDigest, now.UTC().Format(time.RFC3339Nano))
	})
	if err != nil {
		return false, fmt.Errorf("digest: %w", err)
	}
	return queued, nil
}

// lastDigest is when the last digest was made; a new state starts the
// first interval now rather than sending a digest at once.
func lastDigest(tx StoreTx, now time.Time) (time.Time, error) {
	v, found, err := tx.Meta(metaLastDigest)
	if err != nil {
		return time.Time{}, err
	}
	if !found {
		return now, tx.SetMeta(metaLastDigest, now.UTC().Format(time.RFC3339Nano))
	}
	return time.Parse(time.RFC3339Nano, v)
}

// metaInt reads a counter of the meta records, 0 when unset.
func metaInt(tx StoreTx, key string) (int64, error) {
	v, found, err := tx.Meta(key)
	if err != nil || !found {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", key, v, err)
	}
	return n, nil
}

// pendingGroups loads the groups with crashes to summarise. Their number is
// bounded by the groups that crashed within one digest interval.
func pendingGroups(tx StoreTx) ([]*groupState, error) {
	raws, err := tx.PendingGroups()
	if err != nil {
		return nil, err
	}
	out := make([]*groupState, 0, len(raws))
	for _, raw := range raws {
		gs := &groupState{}
		if err := json.Unmarshal(raw, gs); err != nil {
			return nil, err
		}
		out = append(out, gs)
	}
	return out, nil
}

// pruneHandled forgets crashes captured before t: the reports stream no
// longer holds them, so they cannot be delivered again.
func (s *state) pruneHandled(ctx context.Context, t time.Time) error {
	if err := s.store.PruneHandled(ctx, t); err != nil {
		return fmt.Errorf("prune handled crashes: %w", err)
	}
	return nil
}

// queued is one message in the outbox.
type queued struct {
	seq       int64
	signature string
	msg       Message
}

// next returns the oldest undelivered message, or nil.
func (s *state) next(ctx context.Context) (*queued, error) {
	m, ok, err := s.store.Next(ctx)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	if !ok {
		return nil, nil
	}
	q := &queued{seq: m.Seq, signature: m.Signature}
	if err := json.Unmarshal(m.Message, &q.msg); err != nil {
		return nil, fmt.Errorf("read outbox message %d: %w", q.seq, err)
	}
	return q, nil
}

// finish removes q from the outbox, delivered or refused for good, and
// remembers the thread the sender opened for its group.
func (s *state) finish(ctx context.Context, q *queued, thread string) error {
	err := s.store.Update(ctx, func(tx StoreTx) error {
		if err := tx.Dequeue(q.seq); err != nil {
			return err
		}
		if thread == "" || q.signature == "" || q.msg.Kind == KindFollowUp {
			return nil
		}
		gs, err := loadGroup(tx, q.signature)
		if err != nil {
			return err
		}
		gs.Thread = thread
		return saveGroup(tx, gs)
	})
	if err != nil {
		return fmt.Errorf("record delivery of message %d: %w", q.seq, err)
	}
	return nil
}

// outboxLen is how many messages wait for delivery.
func (s *state) outboxLen(ctx context.Context) (int64, error) {
	return s.store.OutboxLen(ctx)
}
