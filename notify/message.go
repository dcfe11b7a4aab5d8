package notify

import (
	"context"
	"time"

	"github.com/corepipe/corepipe"
)

// Kind is why a message is sent.
type Kind string

// Message kinds.
const (
	// KindNew announces the first crash of a group.
	KindNew Kind = "new"
	// KindRegressed announces a group seen again in a newer build after it
	// was quiet for corepipe.QuietPeriod, or a resolved group crashing in a
	// version at or past its fix (Group.Triage says which).
	KindRegressed Kind = "regressed"
	// KindReopened announces an ignored group whose ignore ran out: it
	// crashed again after its time, or as many times as it was ignored for.
	KindReopened Kind = "reopened"
	// KindSpike announces a group crashing faster than the spike rate.
	KindSpike Kind = "spike"
	// KindFollowUp summarises, in the thread of a group's message, the
	// crashes of the group since that message.
	KindFollowUp Kind = "follow_up"
	// KindDigest summarises, in the channel, the crashes of every group
	// since the last digest that no message or thread reply has covered.
	KindDigest Kind = "digest"
)

// Message is one notification, in terms of crashes and groups; a Sender
// renders it for its medium. Every string in it that came from a crash is
// untrusted text.
type Message struct {
	Kind Kind `json:"kind"`
	// Report is the summary of the crash that set off a new, regressed or
	// spike message.
	Report *corepipe.Report `json:"report,omitempty"`
	// Group is the crash's group as it stood after that crash.
	Group *corepipe.Group `json:"group,omitempty"`
	// Spike is the rate that was exceeded, for KindSpike.
	Spike *Spike `json:"spike,omitempty"`
	// FollowUp is the group's crashes since its message, for KindFollowUp.
	FollowUp *Summary `json:"follow_up,omitempty"`
	// Digest is set for KindDigest.
	Digest *Digest `json:"digest,omitempty"`
	// Thread is the thread to reply in, as an earlier Send returned it; set
	// on follow-ups when the message they follow was sent in one.
	Thread string `json:"thread,omitempty"`
}

// Spike is a crash rate: more than Count crashes of one group within Window.
type Spike struct {
	Count  int           `json:"count"`
	Window time.Duration `json:"window"`
}

// Summary counts the crashes of one group that no message announced.
type Summary struct {
	Signature string    `json:"signature"`
	Title     string    `json:"title,omitempty"`
	Count     int64     `json:"count"`
	Total     int64     `json:"total"`
	FirstSeen time.Time `json:"first_seen"`
	Since     time.Time `json:"since"`
	// Last* describe the latest of the counted crashes.
	LastAt       time.Time `json:"last_at"`
	LastID       string    `json:"last_id,omitempty"`
	LastNode     string    `json:"last_node,omitempty"`
	LastWorkload string    `json:"last_workload,omitempty"`
}

// Digest is the periodic summary of crashes not otherwise announced.
type Digest struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Groups are the groups with the most crashes, most first.
	Groups []Summary `json:"groups"`
	// MoreGroups and MoreCrashes count what did not fit in Groups.
	MoreGroups  int   `json:"more_groups,omitempty"`
	MoreCrashes int64 `json:"more_crashes,omitempty"`
	// Unanalysed counts crashes whose analysis failed, which have no group.
	Unanalysed int64 `json:"unanalysed,omitempty"`
}

// Sender delivers messages to people.
type Sender interface {
	// Send delivers m, retrying failures that may pass, until it is
	// accepted, ctx ends, or it is refused for good, which is an error
	// wrapping corepipe.ErrInvalid. It returns the thread that replies about
	// the same group go in, or "" when the sender cannot thread.
	Send(ctx context.Context, m *Message) (thread string, err error)
	// Threads reports whether Send returns threads: without them, follow-ups
	// go into the digest.
	Threads() bool
}
