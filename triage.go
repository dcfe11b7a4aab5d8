package corepipe

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// TriageStatus is what people set (open, resolved, ignored) and what a
// crash turns a resolved group into (regressed).
type TriageStatus string

// Triage statuses.
const (
	TriageOpen      TriageStatus = "open"
	TriageResolved  TriageStatus = "resolved"
	TriageIgnored   TriageStatus = "ignored"
	TriageRegressed TriageStatus = "regressed"
)

// Group statuses that come from triage rather than from the crashes alone.
const (
	GroupResolved GroupStatus = "resolved"
	GroupIgnored  GroupStatus = "ignored"
)

// ResolvedNextRelease as resolved_in resolves a group in the release after
// the newest one it was seen in.
const ResolvedNextRelease = "next"

// Triage is what people decided about a group, and what the crashes since
// have done to that decision. Both the index and the notifier fold crashes
// into their own copy with Observe, from the same decision, so they agree
// without talking to each other.
//
// Versions are releases: two semantic versions (v1.2.3, 1.2.3-rc.1) compare
// as semver; any other pair compares by the order in which the group first
// saw them (Versions), a version never seen being newer than every one seen.
type Triage struct {
	Status TriageStatus `json:"status"`
	// ResolvedIn is what people said: "" (now), "next" or a version.
	ResolvedIn string `json:"resolved_in,omitempty"`
	// Baseline is the group's newest version when it was resolved: a
	// crash in it or newer regresses a group resolved now, one strictly
	// newer a group resolved in the next release.
	Baseline string `json:"baseline,omitempty"`
	// An ignored group is silent until IgnoreUntil, or until IgnoreCount
	// more crashes, whichever comes first; neither set is forever.
	IgnoreUntil time.Time `json:"ignore_until,omitzero"`
	IgnoreCount int64     `json:"ignore_count,omitempty"`
	Assignee    string    `json:"assignee,omitempty"`
	// IssueURL is the tracker's issue about the group.
	IssueURL string `json:"issue_url,omitempty"`
	// Rev counts the decisions people made about the status; Observe,
	// assigning and commenting never change it, so a copy with an older
	// Rev is a copy of an older decision.
	Rev       int64     `json:"rev"`
	DecidedAt time.Time `json:"decided_at"`
	// Since counts the crashes captured after DecidedAt.
	Since int64 `json:"since,omitempty"`
	// Versions are the group's versions, first seen first, bounded by
	// maxTriageVersions: the order of versions that are not semver.
	Versions []string `json:"versions,omitempty"`
	// ReopenedBy is the crash that ended a resolution or an ignore.
	ReopenedBy string `json:"reopened_by,omitempty"`
}

// TriageChange is one decision about a group, as people make it through
// the API or the UI. Empty fields keep what was there, except that a new
// status replaces the conditions of the old one.
type TriageChange struct {
	Status      TriageStatus `json:"status,omitempty"`
	ResolvedIn  string       `json:"resolved_in,omitempty"`
	IgnoreUntil time.Time    `json:"ignore_until,omitzero"`
	IgnoreCount int64        `json:"ignore_count,omitempty"`
	// Assignee nil keeps the owner, "" unassigns.
	Assignee *string `json:"assignee,omitempty"`
	// IssueURL nil keeps the linked issue, "" unlinks it.
	IssueURL *string `json:"issue_url,omitempty"`
	// Comment is why, for the history.
	Comment string `json:"comment,omitempty"`
}

// TriageEvent is one line of a group's history: who changed what, when and
// why. Changes made by a crash name it and have Who "corepipe".
type TriageEvent struct {
	At      time.Time `json:"at"`
	Who     string    `json:"who"`
	Role    string    `json:"role,omitempty"`
	Change  string    `json:"change"`
	Comment string    `json:"comment,omitempty"`
	CrashID string    `json:"crash_id,omitempty"`
}

// Transitions Observe reports.
const (
	// TransitionRegressed: a resolved group crashed in a version at or
	// past its fix.
	TransitionRegressed = "regressed"
	// TransitionUnignored: an ignored group's condition ended.
	TransitionUnignored = "unignored"
)

// Bounds of what a decision holds, so a hostile request or a crash loop
// over thousands of builds cannot grow one record without limit.
const (
	maxTriageVersions = 200
	maxTriageText     = 200
	MaxTriageComment  = 2000
	maxIssueURL       = 2000
)

// Apply makes the decision c on top of t (nil for a group never triaged)
// for group g, whose versions so far are versions (first seen first), at
// now. It returns the new decision and a line saying what changed.
func (t *Triage) Apply(c TriageChange, g *Group, versions []string, now time.Time) (*Triage, string, error) {
	if err := c.check(); err != nil {
		return nil, "", err
	}
	next := Triage{Status: TriageOpen, DecidedAt: now}
	if t != nil {
		next = *t
	}
	var said []string
	if c.Status != "" {
		// A new decision: crashes count towards it from now. Assigning or
		// commenting alone is no new decision, and keeps the count of an
		// ignore going.
		next.Rev++
		next.DecidedAt = now
		next.Since = 0
		next.ReopenedBy = ""
		next.Versions = boundVersions(versions, g.LastVersion)
		next.Status, next.ResolvedIn, next.Baseline = c.Status, "", ""
		next.IgnoreUntil, next.IgnoreCount = time.Time{}, 0
		switch c.Status {
		case TriageResolved:
			next.ResolvedIn, next.Baseline = c.ResolvedIn, g.LastVersion
			switch c.ResolvedIn {
			case "":
				said = append(said, "resolved")
			case ResolvedNextRelease:
				said = append(said, "resolved in the next release")
			default:
				said = append(said, "resolved in "+c.ResolvedIn)
			}
		case TriageIgnored:
			next.IgnoreUntil, next.IgnoreCount = c.IgnoreUntil, c.IgnoreCount
			s := "ignored"
			if !c.IgnoreUntil.IsZero() {
				s += " until " + c.IgnoreUntil.UTC().Format(time.RFC3339)
			}
			if c.IgnoreCount > 0 {
				if !c.IgnoreUntil.IsZero() {
					s += " or"
				}
				s += " for " + strconv.FormatInt(c.IgnoreCount, 10) + " more crashes"
			}
			if c.IgnoreUntil.IsZero() && c.IgnoreCount == 0 {
				s += " forever"
			}
			said = append(said, s)
		default:
			said = append(said, "reopened")
		}
	}
	if s, ok := setText(&next.Assignee, c.Assignee, "unassigned", "assigned to "); ok {
		said = append(said, s)
	}
	if s, ok := setText(&next.IssueURL, c.IssueURL, "unlinked its issue", "linked to "); ok {
		said = append(said, s)
	}
	if len(said) == 0 {
		if c.Comment == "" {
			return nil, "", fmt.Errorf("%w: triage: nothing to change", ErrInvalid)
		}
		said = append(said, "commented")
	}
	return &next, strings.Join(said, ", "), nil
}

// setText applies a change to a text field of a decision: to is the new
// value, nil for no change. It says what changed, cleared when the field is
// now empty and set followed by the value otherwise; ok is false when the
// field is as it was.
func setText(field, to *string, cleared, set string) (said string, ok bool) {
	if to == nil || *to == *field {
		return "", false
	}
	*field = *to
	if *field == "" {
		return cleared, true
	}
	return set + *field, true
}

func (c TriageChange) check() error {
	switch c.Status {
	case "", TriageOpen, TriageResolved, TriageIgnored:
	default:
		return fmt.Errorf("%w: triage status %q: want open, resolved or ignored", ErrInvalid, Clip(string(c.Status), 64))
	}
	if c.ResolvedIn != "" && c.Status != TriageResolved {
		return fmt.Errorf("%w: resolved_in needs status resolved", ErrInvalid)
	}
	if (!c.IgnoreUntil.IsZero() || c.IgnoreCount != 0) && c.Status != TriageIgnored {
		return fmt.Errorf("%w: ignore_until and ignore_count need status ignored", ErrInvalid)
	}
	if c.IgnoreCount < 0 {
		return fmt.Errorf("%w: ignore_count %d: want a positive count", ErrInvalid, c.IgnoreCount)
	}
	if !printable(c.ResolvedIn, maxTriageText) {
		return fmt.Errorf("%w: resolved_in: want a version of at most %d printable characters", ErrInvalid, maxTriageText)
	}
	if c.Assignee != nil && !printable(*c.Assignee, maxTriageText) {
		return fmt.Errorf("%w: assignee: want a name of at most %d printable characters", ErrInvalid, maxTriageText)
	}
	if c.IssueURL != nil && *c.IssueURL != "" {
		u, err := url.Parse(*c.IssueURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(*c.IssueURL) > maxIssueURL || !printable(*c.IssueURL, maxIssueURL) {
			return fmt.Errorf("%w: issue_url: want an http(s) URL of at most %d characters", ErrInvalid, maxIssueURL)
		}
	}
	if len(c.Comment) > MaxTriageComment || strings.ContainsFunc(c.Comment, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) {
		return fmt.Errorf("%w: comment: want at most %d characters of text", ErrInvalid, MaxTriageComment)
	}
	return nil
}

func printable(s string, n int) bool {
	return len(s) <= n && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

func boundVersions(versions []string, last string) []string {
	out := make([]string, 0, min(len(versions)+1, maxTriageVersions))
	for _, v := range versions {
		if v != "" && len(out) < maxTriageVersions && !contains(out, v) {
			out = append(out, v)
		}
	}
	if last != "" && len(out) < maxTriageVersions && !contains(out, last) {
		out = append(out, last)
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Observe folds crash r into the decision and reports the transition it
// caused, if any. Crashes captured before the decision are history it was
// made with: they change nothing.
func (t *Triage) Observe(r *Report) string {
	if r.CapturedAt.Before(t.DecidedAt) {
		return ""
	}
	v := r.Version()
	if v != "" && len(t.Versions) < maxTriageVersions && !contains(t.Versions, v) {
		t.Versions = append(t.Versions, v)
	}
	t.Since++
	switch t.Status {
	case TriageResolved:
		if t.regresses(v) {
			t.Status, t.ReopenedBy = TriageRegressed, r.ID
			return TransitionRegressed
		}
	case TriageIgnored:
		if t.IgnoreCount > 0 && t.Since >= t.IgnoreCount || !t.IgnoreUntil.IsZero() && !r.CapturedAt.Before(t.IgnoreUntil) {
			t.Status, t.ReopenedBy = TriageOpen, r.ID
			t.IgnoreUntil, t.IgnoreCount = time.Time{}, 0
			return TransitionUnignored
		}
	}
	return ""
}

// regresses reports whether a crash in version v reopens the resolved
// group. A crash whose version is unknown reopens a group resolved now
// (it came after the fix), and no other: nothing says it is newer.
func (t *Triage) regresses(v string) bool {
	switch t.ResolvedIn {
	case "":
		return v == "" || t.Baseline == "" || t.CompareVersions(v, t.Baseline) >= 0
	case ResolvedNextRelease:
		return v != "" && (t.Baseline == "" || t.CompareVersions(v, t.Baseline) > 0)
	default:
		return v != "" && t.CompareVersions(v, t.ResolvedIn) >= 0
	}
}

// GroupStatus is the status a group shows: observed (new, ongoing,
// regressed from the crashes alone) unless triage says otherwise. An
// ignore whose time has passed shows as the crashes say.
func (t *Triage) GroupStatus(observed GroupStatus, now time.Time) GroupStatus {
	if t == nil {
		return observed
	}
	switch t.Status {
	case TriageResolved:
		return GroupResolved
	case TriageRegressed:
		return GroupRegressed
	case TriageIgnored:
		if t.IgnoreUntil.IsZero() || now.Before(t.IgnoreUntil) {
			return GroupIgnored
		}
	}
	return observed
}

// CompareVersions orders two versions as releases: -1, 0 or +1 as a is
// older than, the same as or newer than b. See Triage.
func (t *Triage) CompareVersions(a, b string) int {
	if a == b {
		return 0
	}
	if sa, ok := parseSemver(a); ok {
		if sb, ok := parseSemver(b); ok {
			if c := sa.compare(sb); c != 0 {
				return c
			}
		}
	}
	ia, ib := position(t.Versions, a), position(t.Versions, b)
	switch {
	case ia < ib:
		return -1
	case ia > ib:
		return 1
	}
	return 0
}

// position is where v was first seen; never is after everything.
func position(list []string, v string) int {
	for i, x := range list {
		if x == v {
			return i
		}
	}
	return len(list) + 1<<20
}

// semver is a semantic version without its build metadata.
type semver struct {
	core [3]int64
	pre  []string
}

// parseSemver reads MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], with or
// without the leading "v" Go modules use; Go's pseudo-versions are
// prereleases, and order by their timestamps as they should.
func parseSemver(s string) (semver, bool) {
	s = strings.TrimPrefix(s, "v")
	s, _, _ = strings.Cut(s, "+")
	s, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return semver{}, false
	}
	var v semver
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 || p == "" || len(p) > 1 && p[0] == '0' {
			return semver{}, false
		}
		v.core[i] = n
	}
	if hasPre {
		if pre == "" {
			return semver{}, false
		}
		v.pre = strings.Split(pre, ".")
	}
	return v, true
}

func (a semver) compare(b semver) int {
	for i := range a.core {
		if c := cmpInt(a.core[i], b.core[i]); c != 0 {
			return c
		}
	}
	// A release is newer than its prereleases.
	switch {
	case len(a.pre) == 0 && len(b.pre) == 0:
		return 0
	case len(a.pre) == 0:
		return 1
	case len(b.pre) == 0:
		return -1
	}
	for i := 0; i < len(a.pre) && i < len(b.pre); i++ {
		x, y := a.pre[i], b.pre[i]
		nx, ex := strconv.ParseInt(x, 10, 64)
		ny, ey := strconv.ParseInt(y, 10, 64)
		switch {
		case ex == nil && ey == nil:
			if c := cmpInt(nx, ny); c != 0 {
				return c
			}
		case ex == nil:
			return -1 // numeric identifiers sort before alphanumeric ones
		case ey == nil:
			return 1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return cmpInt(int64(len(a.pre)), int64(len(b.pre)))
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// maxVersionShown is as long as a version gets where versions are listed:
// a Go build ID (80 characters, no spaces) widens any table it is in past a
// laptop's screen.
const maxVersionShown = 20

// ShortVersion is v as lists show it: a release as it is, a VCS revision or
// build ID cut to its first 12 characters, which still tell builds apart.
func ShortVersion(v string) string {
	if _, ok := parseSemver(v); ok || len(v) <= maxVersionShown {
		return v
	}
	return v[:12] + "…"
}

// Release is one version crashes came from.
type Release struct {
	Version string `json:"version"`
	Crashes int64  `json:"crashes"`
	// Groups is how many bugs crashed in it; NewGroups how many of them
	// were first seen in it.
	Groups    int64     `json:"groups"`
	NewGroups int64     `json:"new_groups"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}
