package corepipe

import (
	"testing"
	"time"
)

func TestCompareVersions(t *testing.T) {
	tr := &Triage{Versions: []string{"abc123", "def456", "v2.0.0"}}
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"v1.2.3", "v1.2.3", 0},
		{"v1.10.0", "v1.9.0", 1},
		{"1.2.3", "v1.2.4", -1},
		{"v1.2.3-rc.1", "v1.2.3", -1},
		{"v1.2.3-rc.2", "v1.2.3-rc.10", -1},
		{"v1.2.3-alpha", "v1.2.3-1", 1},
		{"v1.2.3+dirty", "v1.2.3", 0},
		{"v0.0.0-20261101120000-abcdefabcdef", "v0.0.0-20261102120000-012345012345", -1},
		// Not semver: the order the group first saw them in.
		{"abc123", "def456", -1},
		{"def456", "abc123", 1},
		{"v2.0.0", "def456", 1},
		// Never seen is newer than anything seen.
		{"fff999", "v2.0.0", 1},
		{"abc123", "fff999", -1},
		{"v01.2.3", "abc123", 1},
	} {
		if got := tr.CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestTriageStateMachine(t *testing.T) {
	t0 := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	crash := func(at time.Duration, version string) *Report {
		return &Report{ID: NewID(t0.Add(at)), Signature: "gocrash/v1:aa", CapturedAt: t0.Add(at),
			Go: &GoInfo{MainVersion: version}}
	}
	g := &Group{LastVersion: "v1.2.0"}
	type step struct {
		at         time.Duration
		version    string
		transition string
		status     TriageStatus
	}
	for _, tc := range []struct {
		name   string
		change TriageChange
		steps  []step
	}{
		{"resolved now: the same version or newer regresses, older does not", TriageChange{Status: TriageResolved}, []step{
			{-time.Hour, "v1.3.0", "", TriageResolved}, // before the decision: history
			{time.Minute, "v1.1.0", "", TriageResolved},
			{2 * time.Minute, "v1.2.0", TransitionRegressed, TriageRegressed},
			{3 * time.Minute, "v1.3.0", "", TriageRegressed},
		}},
		{"resolved in the next release: only a newer one regresses", TriageChange{Status: TriageResolved, ResolvedIn: ResolvedNextRelease}, []step{
			{time.Minute, "v1.2.0", "", TriageResolved},
			{2 * time.Minute, "v1.1.0", "", TriageResolved},
			{3 * time.Minute, "", "", TriageResolved},
			{4 * time.Minute, "v1.2.1", TransitionRegressed, TriageRegressed},
		}},
		{"resolved in a version: it and newer regress", TriageChange{Status: TriageResolved, ResolvedIn: "v1.4.0"}, []step{
			{time.Minute, "v1.3.9", "", TriageResolved},
			{2 * time.Minute, "v1.4.0", TransitionRegressed, TriageRegressed},
		}},
		{"resolved in a build that is not semver: by first-seen order", TriageChange{Status: TriageResolved, ResolvedIn: ResolvedNextRelease}, []step{
			{time.Minute, "abc123", TransitionRegressed, TriageRegressed}, // first seen after v1.2.0
		}},
		{"ignored for 3 crashes", TriageChange{Status: TriageIgnored, IgnoreCount: 3}, []step{
			{time.Minute, "v1.2.0", "", TriageIgnored},
			{2 * time.Minute, "v1.2.0", "", TriageIgnored},
			{3 * time.Minute, "v1.2.0", TransitionUnignored, TriageOpen},
			{4 * time.Minute, "v1.2.0", "", TriageOpen},
		}},
		{"ignored until a time", TriageChange{Status: TriageIgnored, IgnoreUntil: t0.Add(time.Hour)}, []step{
			{time.Minute, "v1.2.0", "", TriageIgnored},
			{time.Hour, "v1.2.0", TransitionUnignored, TriageOpen},
		}},
		{"ignored forever", TriageChange{Status: TriageIgnored}, []step{
			{time.Minute, "v9.0.0", "", TriageIgnored},
			{1000 * time.Hour, "v9.0.0", "", TriageIgnored},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, _, err := (*Triage)(nil).Apply(tc.change, g, []string{"v1.1.0", "v1.2.0"}, t0)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.steps {
				if got := tr.Observe(crash(s.at, s.version)); got != s.transition || tr.Status != s.status {
					t.Fatalf("step %d (%s): transition %q, status %s; want %q, %s", i, s.version, got, tr.Status, s.transition, s.status)
				}
			}
		})
	}
}

func TestTriageApply(t *testing.T) {
	now := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	g := &Group{LastVersion: "v1"}
	team := "team-payments"
	tr, said, err := (*Triage)(nil).Apply(TriageChange{Status: TriageIgnored, IgnoreCount: 5, Assignee: &team}, g, nil, now)
	if err != nil || said != "ignored for 5 more crashes, assigned to team-payments" || tr.Rev != 1 || tr.Assignee != team {
		t.Fatalf("%+v %q %v", tr, said, err)
	}
	// A new status drops the old one's conditions; the owner stays.
	tr2, said, err := tr.Apply(TriageChange{Status: TriageResolved, ResolvedIn: "v2"}, g, nil, now)
	if err != nil || said != "resolved in v2" || tr2.IgnoreCount != 0 || tr2.Assignee != team || tr2.Rev != 2 {
		t.Fatalf("%+v %q %v", tr2, said, err)
	}
	for name, c := range map[string]TriageChange{
		"unknown status":            {Status: "fixed"},
		"resolved_in while ignored": {Status: TriageIgnored, ResolvedIn: "v2"},
		"ignore while resolved":     {Status: TriageResolved, IgnoreCount: 2},
		"negative count":            {Status: TriageIgnored, IgnoreCount: -1},
		"nothing":                   {},
		"control characters":        {Status: TriageOpen, Comment: "a\x1b[2Jb"},
	} {
		if _, _, err := tr.Apply(c, g, nil, now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTriageGroupStatus(t *testing.T) {
	now := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	var none *Triage
	for _, tc := range []struct {
		t    *Triage
		want GroupStatus
	}{
		{none, GroupOngoing},
		{&Triage{Status: TriageOpen}, GroupOngoing},
		{&Triage{Status: TriageResolved}, GroupResolved},
		{&Triage{Status: TriageRegressed}, GroupRegressed},
		{&Triage{Status: TriageIgnored}, GroupIgnored},
		{&Triage{Status: TriageIgnored, IgnoreUntil: now.Add(time.Minute)}, GroupIgnored},
		{&Triage{Status: TriageIgnored, IgnoreUntil: now}, GroupOngoing},
	} {
		if got := tc.t.GroupStatus(GroupOngoing, now); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.t, got, tc.want)
		}
	}
}

func TestShortVersion(t *testing.T) {
	buildID := "Rz3Hk0lXbJd9mPq2vWcN/aBcDeFgHiJkLmNoPqRs/tUvWxYz0123456789ab/cDeFgHiJkLmNoPqRsTuV"
	for v, want := range map[string]string{
		"v1.2.3":                                   "v1.2.3",
		"v0.0.0-20261101120000-abcdefabcdef":       "v0.0.0-20261101120000-abcdefabcdef",
		"0123456789abcdef0123456789abcdef01234567": "0123456789ab…",
		buildID: "Rz3Hk0lXbJd9…",
		"":      "",
	} {
		if got := ShortVersion(v); got != want {
			t.Errorf("ShortVersion(%q) = %q, want %q", v, got, want)
		}
	}
}
