package notify_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
)

// decisions is a TriageSource people change while the notifier runs.
type decisions struct {
	mu sync.Mutex
	m  map[string]*corepipe.Triage
}

func (d *decisions) Triage(_ context.Context, signature string) (*corepipe.Triage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t := d.m[signature]; t != nil {
		c := *t
		return &c, nil
	}
	return nil, nil
}

// decide makes change about the group at, as the API would.
func (d *decisions) decide(t *testing.T, signature string, c corepipe.TriageChange, g *corepipe.Group, at time.Time) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	next, _, err := d.m[signature].Apply(c, g, []string{g.LastVersion}, at)
	if err != nil {
		t.Fatal(err)
	}
	if d.m == nil {
		d.m = map[string]*corepipe.Triage{}
	}
	d.m[signature] = next
}

func TestIgnoredForCrashesIsSilentThenSpeaks(t *testing.T) {
	h, src, n, now := alertedThenTriaged(t, "v1.0.0")
	src.decide(t, sigA, corepipe.TriageChange{Status: corepipe.TriageIgnored, IgnoreCount: 3}, &corepipe.Group{LastVersion: "v1.0.0"}, now)

	// Two hours on, past the cool-down: without the ignore the first
	// would be a spike or a follow-up, never silence.
	h.publish(report(now.Add(time.Second), sigA, "v1.0.0"), report(now.Add(2*time.Second), sigA, "v1.0.0"))
	testkit.WaitFor(t, "two ignored crashes", func() bool { return n.metric("corepipe_notifier_crashes_suppressed_total", "reason", "ignored") == 2 })
	h.settle(n)
	if got := len(h.slack.got()); got != 1 {
		t.Fatalf("%d messages while ignored, want the first alert only (not even a digest)", got)
	}
	h.publish(report(now.Add(3*time.Second), sigA, "v1.0.0"))
	testkit.WaitFor(t, "the end of the ignore", func() bool { return len(h.slack.got()) == 2 })
	if hd := header(h.slack.got()[1]); !strings.HasPrefix(hd, "No longer ignored: ") {
		t.Errorf("header %q", hd)
	}
}

func TestIgnoredUntilIsSilentThenSpeaks(t *testing.T) {
	h, src, n, now := alertedThenTriaged(t, "v1.0.0")
	until := now.Add(30 * time.Minute)
	src.decide(t, sigA, corepipe.TriageChange{Status: corepipe.TriageIgnored, IgnoreUntil: until}, &corepipe.Group{LastVersion: "v1.0.0"}, now)
	h.publish(report(until.Add(-time.Minute), sigA, "v1.0.0"))
	testkit.WaitFor(t, "an ignored crash", func() bool { return n.metric("corepipe_notifier_crashes_suppressed_total", "reason", "ignored") == 1 })
	h.clock.Advance(time.Hour)
	h.publish(report(until.Add(time.Minute), sigA, "v1.0.0"))
	testkit.WaitFor(t, "the end of the ignore", func() bool { return len(h.slack.got()) == 2 })
	if hd := header(h.slack.got()[1]); !strings.HasPrefix(hd, "No longer ignored: ") {
		t.Errorf("header %q", hd)
	}
}

func TestResolvedRegressesOnceInANewerVersion(t *testing.T) {
	h, src, n, now := alertedThenTriaged(t, "v1.2.0")
	src.decide(t, sigA, corepipe.TriageChange{Status: corepipe.TriageResolved, ResolvedIn: corepipe.ResolvedNextRelease}, &corepipe.Group{LastVersion: "v1.2.0"}, now)
	// Old builds still running: v1.2.0 is the release it was resolved
	// after, v1.1.9 older still.
	h.publish(report(now.Add(time.Second), sigA, "v1.2.0"), report(now.Add(2*time.Second), sigA, "v1.1.9"))
	testkit.WaitFor(t, "crashes of the resolved group", func() bool { return n.metric("corepipe_notifier_crashes_suppressed_total", "reason", "resolved") == 2 })
	h.publish(report(now.Add(3*time.Second), sigA, "v1.10.0"), report(now.Add(4*time.Second), sigA, "v1.10.0"))
	testkit.WaitFor(t, "the regression", func() bool { return len(h.slack.got()) == 2 })
	testkit.WaitFor(t, "the crash after it", func() bool {
		return n.metric("corepipe_notifier_crashes_suppressed_total", "reason", "summarised") == 1
	})
	if got := len(h.slack.got()); got != 2 {
		t.Fatalf("%d messages, want the alert and one regression", got)
	}
	p := h.slack.got()[1]
	if hd := header(p); !strings.HasPrefix(hd, "Regressed: ") {
		t.Errorf("header %q", hd)
	}
	if all := strings.Join(texts(p), "\n"); !strings.Contains(all, "Resolved in the release after v1.2.0, crashed again in v1.10.0.") {
		t.Errorf("regression does not say why:\n%s", all)
	}
}

// alertedThenTriaged starts a notifier whose triage decisions the test
// makes, has it alert on sigA at version, and moves its clock two hours on,
// past the cool-down: the moment a test triages the group.
func alertedThenTriaged(t *testing.T, version string) (*harness, *decisions, *notifier, time.Time) {
	t.Helper()
	h := newHarness(t, false)
	src := &decisions{}
	h.triage = src
	n := h.start(nil)
	h.publish(report(t0, sigA, version))
	testkit.WaitFor(t, "the alert", func() bool { return len(h.slack.got()) == 1 })
	return h, src, n, h.clock.Advance(2 * time.Hour)
}

// fieldTexts are the texts of a message's fields.
func fieldTexts(p map[string]any) []string {
	var out []string
	blocks, _ := p["blocks"].([]any)
	for _, b := range blocks {
		fields, _ := b.(map[string]any)["fields"].([]any)
		for _, f := range fields {
			if s, ok := f.(map[string]any)["text"].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestOwnersRulesNameTheOwner: the owners rules name the owner of a group
// nobody assigned, as the API's index does, so that Slack names (or, with
// --slack-mentions, mentions) the team the rules give; a person's
// assignment wins over them. The alert named only assignments.
func TestOwnersRulesNameTheOwner(t *testing.T) {
	h := newHarness(t, false)
	rules, err := corepipe.ParseOwners(strings.NewReader("main. team-api\n"))
	if err != nil {
		t.Fatal(err)
	}
	h.owners = rules
	src := &decisions{}
	h.triage = src
	h.start(nil)
	alice := "alice"
	src.decide(t, sigB, corepipe.TriageChange{Assignee: &alice}, &corepipe.Group{LastVersion: "v1.0.0"}, t0)
	h.publish(report(t0, sigA, "v1.0.0"))
	testkit.WaitFor(t, "the first alert", func() bool { return len(h.slack.got()) == 1 })
	h.publish(report(t0.Add(time.Second), sigB, "v1.0.0"))
	testkit.WaitFor(t, "the second alert", func() bool { return len(h.slack.got()) == 2 })
	for i, want := range []string{"Owner: team-api", "Owner: alice"} {
		if fs := fieldTexts(h.slack.got()[i]); !slices.Contains(fs, want) {
			t.Errorf("alert %d: fields %q, want %q", i+1, fs, want)
		}
	}
}
