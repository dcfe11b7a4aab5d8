package notify

import (
	"time"

	"github.com/corepipe/corepipe"
)

// Policy is when the notifier speaks. The zero value of a field takes the
// default in DefaultPolicy.
type Policy struct {
	// Cooldown is how long after a message about a group further alerts
	// about it (a spike, a regression) are held back and summarised.
	Cooldown time.Duration
	// SpikeCount and SpikeWindow: more than SpikeCount crashes of one group
	// within SpikeWindow (by capture time) is a spike. A negative
	// SpikeCount turns spike alerts off.
	SpikeCount  int
	SpikeWindow time.Duration
	// DigestInterval is how often crashes that were not announced are
	// summarised; nothing is sent when there are none.
	DigestInterval time.Duration
	// MaxAge is how old a crash may be and still be announced: a new
	// notifier replays the whole reports stream, and last month's crashes
	// only count towards their groups.
	MaxAge time.Duration
}

// DefaultPolicy suits an on-call channel: at most one alert per group an
// hour, a digest every hour.
var DefaultPolicy = Policy{
	Cooldown:       time.Hour,
	SpikeCount:     20,
	SpikeWindow:    10 * time.Minute,
	DigestInterval: time.Hour,
	MaxAge:         24 * time.Hour,
}

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy
	if p.Cooldown > 0 {
		d.Cooldown = p.Cooldown
	}
	if p.SpikeCount != 0 {
		d.SpikeCount = p.SpikeCount
	}
	if p.SpikeWindow > 0 {
		d.SpikeWindow = p.SpikeWindow
	}
	if p.DigestInterval > 0 {
		d.DigestInterval = p.DigestInterval
	}
	if p.MaxAge > 0 {
		d.MaxAge = p.MaxAge
	}
	return d
}

// groupState is what the notifier remembers of one group.
type groupState struct {
	Group corepipe.Group `json:"group"`
	// NotifiedAt is when the last alert about the group was decided, by
	// the notifier's clock; zero when there was none.
	NotifiedAt time.Time `json:"notified_at,omitzero"`
	// Thread is where follow-ups go, when the sender threads.
	Thread string `json:"thread,omitempty"`
	// The spike window, by capture time.
	WindowStart time.Time `json:"window_start,omitzero"`
	WindowCount int       `json:"window_count,omitempty"`
	// Pending counts crashes since the last alert that no follow-up or
	// digest has covered yet.
	Pending Summary `json:"pending"`
	// Triage is the notifier's copy of people's decision about the group,
	// with the crashes since folded in; nil when there is none.
	Triage *corepipe.Triage `json:"triage,omitempty"`
}

// Reasons a crash was not announced on its own, the label of the
// suppressed metric.
const (
	// reasonSummarised: an ongoing group; the crash goes into the next
	// follow-up or digest.
	reasonSummarised = "summarised"
	// reasonCooldown: a spike or regression within the group's cool-down.
	reasonCooldown = "cooldown"
	// reasonStale: older than MaxAge.
	reasonStale = "stale"
	// reasonIgnored: people ignore the group; not even a digest counts it.
	reasonIgnored = "ignored"
	// reasonResolved: a resolved group crashed in a version older than
	// its fix; it stays resolved and quiet.
	reasonResolved = "resolved"
)

// decide folds crash r into gs and says whether it is announced (kind) or
// why not (reason). now is the notifier's clock, for the cool-down; the
// spike window runs on capture times, so a replay decides the same.
// decision is what people decided about the group, nil for nothing: a new
// decision replaces the notifier's copy, which then folds the crashes as
// the index's copy does.
func (p Policy) decide(gs *groupState, r *corepipe.Report, now time.Time, decision *corepipe.Triage) (kind Kind, reason string) {
	switch {
	case decision == nil:
		gs.Triage = nil
	case gs.Triage == nil || gs.Triage.Rev != decision.Rev:
		t := *decision
		t.Versions = append([]string(nil), decision.Versions...)
		gs.Triage = &t
	}
	status := gs.Group.Observe(r)
	spike := p.countSpike(gs, r.CapturedAt)
	var transition string
	if gs.Triage != nil {
		transition = gs.Triage.Observe(r)
	}
	if now.Sub(r.CapturedAt) > p.MaxAge {
		return "", reasonStale
	}
	switch {
	case transition == corepipe.TransitionRegressed:
		// Once: the group is no longer resolved. No cool-down holds it
		// back, since someone said it was fixed.
		gs.NotifiedAt = now
		return KindRegressed, ""
	case transition == corepipe.TransitionUnignored:
		gs.NotifiedAt = now
		return KindReopened, ""
	case gs.Triage != nil && gs.Triage.Status == corepipe.TriageIgnored:
		return "", reasonIgnored
	case gs.Triage != nil && gs.Triage.Status == corepipe.TriageResolved:
		return "", reasonResolved
	}
	switch {
	case status == corepipe.GroupNew, gs.NotifiedAt.IsZero():
		// A group whose first crashes were history when the notifier
		// started is new to the channel.
		kind = KindNew
	case status == corepipe.GroupRegressed:
		kind = KindRegressed
	case spike:
		kind = KindSpike
	}
	if kind != "" && kind != KindNew && now.Sub(gs.NotifiedAt) < p.Cooldown {
		kind, reason = "", reasonCooldown
	}
	if kind != "" {
		gs.NotifiedAt = now
		return kind, ""
	}
	gs.addPending(r)
	if reason == "" {
		reason = reasonSummarised
	}
	return "", reason
}

// countSpike counts a crash at t in the group's window and reports whether
// it is the one that exceeds the spike rate: a spike is announced once per
// window.
func (p Policy) countSpike(gs *groupState, t time.Time) bool {
	if gs.WindowCount == 0 || t.Sub(gs.WindowStart) >= p.SpikeWindow {
		gs.WindowStart, gs.WindowCount = t, 0
	}
	gs.WindowCount++
	return p.SpikeCount >= 0 && gs.WindowCount == p.SpikeCount+1
}

func (gs *groupState) addPending(r *corepipe.Report) {
	s := &gs.Pending
	if s.Count == 0 {
		*s = Summary{Since: r.CapturedAt}
	}
	s.Count++
	if r.CapturedAt.Before(s.Since) {
		s.Since = r.CapturedAt
	}
	if !r.CapturedAt.Before(s.LastAt) {
		s.LastAt, s.LastID, s.LastNode, s.LastWorkload = r.CapturedAt, r.ID, r.Node, r.Workload()
	}
}

// summary is the group's pending crashes, ready to send.
func (gs *groupState) summary() Summary {
	s := gs.Pending
	s.Signature, s.Title = gs.Group.Signature, gs.Group.Title
	s.Total, s.FirstSeen = gs.Group.Count, gs.Group.FirstSeen
	return s
}
