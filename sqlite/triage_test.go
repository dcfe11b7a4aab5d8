package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

// liveReport is a crash of sig in version captured at now+at: triage counts
// only crashes captured after its decision, which is made on the wall clock.
func liveReport(sig string, at time.Duration, version string) *corepipe.Report {
	r := groupReport(sig, 0, version, "node-a", "api-0")
	r.CapturedAt = time.Now().Add(at).UTC()
	r.ID = corepipe.NewID(r.CapturedAt)
	return r
}

func setTriage(t *testing.T, x *Index, sig string, c corepipe.TriageChange) *corepipe.Group {
	t.Helper()
	g, err := x.SetTriage(context.Background(), sig, c, corepipe.TriageEvent{Who: "alice", Role: "triage"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func history(t *testing.T, x *Index, sig string) []string {
	t.Helper()
	h, err := x.TriageHistory(context.Background(), sig)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range h {
		out = append(out, e.Who+": "+e.Change)
	}
	return out
}

func TestResolvedRegressesOnlyInANewerVersion(t *testing.T) {
	x, _ := openTest(t)
	const sig = "gocrash/v1:5e5e"
	upsert(t, x, liveReport(sig, -time.Hour, "v1.2.0"))
	g := setTriage(t, x, sig, corepipe.TriageChange{Status: corepipe.TriageResolved, ResolvedIn: corepipe.ResolvedNextRelease, Comment: "fixed by #42"})
	if g.Status != corepipe.GroupResolved {
		t.Fatalf("after resolving: %s", g.Status)
	}
	upsert(t, x, liveReport(sig, time.Second, "v1.1.0"), liveReport(sig, 2*time.Second, "v1.2.0"))
	if g := group(t, x, sig); g.Status != corepipe.GroupResolved || g.Count != 3 {
		t.Fatalf("an older version reopened it: %s, %d crashes", g.Status, g.Count)
	}
	newer := liveReport(sig, 3*time.Second, "v1.10.0")
	upsert(t, x, newer, liveReport(sig, 4*time.Second, "v1.10.0"))
	g = group(t, x, sig)
	if g.Status != corepipe.GroupRegressed || g.Triage.ReopenedBy != newer.ID {
		t.Fatalf("after a newer version: %s, reopened by %q", g.Status, g.Triage.ReopenedBy)
	}
	want := []string{"corepipe: regressed: crashed in v1.10.0, newer than v1.2.0", "alice: resolved in the next release"}
	if h := history(t, x, sig); !slices.Equal(h, want) {
		t.Fatalf("history %q, want %q", h, want)
	}
	if regressed, _, err := x.Groups(context.Background(), corepipe.GroupFilter{Status: corepipe.GroupRegressed}); err != nil || len(regressed) != 1 {
		t.Errorf("groups filtered by regressed: %d, %v", len(regressed), err)
	}

	// A rebuild folds the crashes again from the decision: the same
	// status, and the regression recorded once.
	var all []*corepipe.Report
	rs, _, err := x.Crashes(context.Background(), corepipe.CrashFilter{Signature: sig})
	if err != nil {
		t.Fatal(err)
	}
	for i := len(rs) - 1; i >= 0; i-- {
		all = append(all, rs[i])
	}
	rebuild(t, x, all...)
	if g := group(t, x, sig); g.Status != corepipe.GroupRegressed || g.Count != 5 {
		t.Errorf("after a rebuild: %s, %d crashes", g.Status, g.Count)
	}
	if h := history(t, x, sig); !slices.Equal(h, want) {
		t.Errorf("after a rebuild, history %q", h)
	}
}

func TestIgnoreAndAssign(t *testing.T) {
	x, _ := openTest(t)
	const sig, other = "gocrash/v1:1901", "gocrash/v1:1902"
	upsert(t, x, liveReport(sig, -time.Hour, "v1"), liveReport(other, -time.Hour, "v1"))
	team := "team-payments"
	setTriage(t, x, sig, corepipe.TriageChange{Status: corepipe.TriageIgnored, IgnoreCount: 2, Assignee: &team})
	upsert(t, x, liveReport(sig, time.Second, "v1"))
	if g := group(t, x, sig); g.Status != corepipe.GroupIgnored || g.Assignee != team {
		t.Fatalf("after 1 of 2 crashes: %s, owner %q", g.Status, g.Assignee)
	}
	// Handing it to another team is no new decision: the count goes on.
	team = "team-checkout"
	if g := setTriage(t, x, sig, corepipe.TriageChange{Assignee: &team, Comment: "theirs"}); g.Status != corepipe.GroupIgnored || g.Triage.Since != 1 {
		t.Fatalf("after reassigning: %s, %d crashes counted", g.Status, g.Triage.Since)
	}
	upsert(t, x, liveReport(sig, 2*time.Second, "v1"))
	if g := group(t, x, sig); g.Status != corepipe.GroupOngoing {
		t.Fatalf("after 2 of 2 crashes: %s", g.Status)
	}
	want := []string{"corepipe: no longer ignored: crashed 2 more times", "alice: assigned to team-checkout", "alice: ignored for 2 more crashes, assigned to team-payments"}
	if h := history(t, x, sig); !slices.Equal(h, want) {
		t.Errorf("history %q, want %q", h, want)
	}
	owned, _, err := x.Groups(context.Background(), corepipe.GroupFilter{Assignee: team})
	if err != nil || len(owned) != 1 || owned[0].Signature != sig {
		t.Errorf("groups of %s: %v %v", team, owned, err)
	}
	if _, err := x.SetTriage(context.Background(), "gocrash/v1:none", corepipe.TriageChange{Status: corepipe.TriageOpen}, corepipe.TriageEvent{}); !errors.Is(err, corepipe.ErrNotFound) {
		t.Errorf("triage of an unknown group: %v", err)
	}
	d, err := x.Triage(context.Background(), sig)
	if err != nil || d == nil || d.Rev != 1 || d.Since != 0 || d.Status != corepipe.TriageIgnored {
		t.Errorf("the decision as people made it: %+v %v", d, err)
	}
}

func searchReport(i int, title, message string, functions ...string) *corepipe.Report {
	r := report(i)
	r.Title = title
	r.Panic = &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: message}
	r.CrashingGoroutine = 1
	var frames []corepipe.Frame
	for _, f := range functions {
		frames = append(frames, corepipe.Frame{Function: f})
	}
	r.Goroutines = []corepipe.Goroutine{
		{ID: 1, Status: "running", Frames: frames},
		{ID: 2, Status: "waiting", Frames: []corepipe.Frame{{Function: "main.idleWorker"}}},
	}
	return r
}

func TestSearch(t *testing.T) {
	// Each way matchTerm can take: fetch and sort the few matches, check
	// the walk against the gathered matches, ask the text index per crash.
	for _, tc := range []struct {
		name  string
		few   int
		dense float64
	}{{"few", fewMatches, denseMatches}, {"gathered", 0, 2}, {"asked", 0, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(few int, dense float64) { fewMatches, denseMatches = few, dense }(fewMatches, denseMatches)
			fewMatches, denseMatches = tc.few, tc.dense
			testSearch(t)
		})
	}
}

func testSearch(t *testing.T) {
	x, _ := openTest(t)
	a := searchReport(1, "nil pointer dereference in main.(*server).retries", "runtime error: invalid memory address or nil pointer dereference",
		"runtime.sigpanic", "main.(*server).retries", "main.handle_request")
	b := searchReport(2, "index out of range in billing.charge", "runtime error: index out of range [5] with length 3", "billing.charge", "main.main")
	b.Node = "node-b"
	c := searchReport(3, "index out of range in billing.refund", "runtime error: index out of range [7] with length 2", "billing.refund")
	upsert(t, x, a, b, c)
	for _, tc := range []struct {
		f    corepipe.CrashFilter
		want []string
	}{
		{corepipe.CrashFilter{Query: "retries"}, []string{a.ID}},                // title and function
		{corepipe.CrashFilter{Query: "invalid memory"}, []string{a.ID}},         // panic message, every word
		{corepipe.CrashFilter{Query: "handle_request"}, []string{a.ID}},         // a function only the stack has
		{corepipe.CrashFilter{Query: "main.(*server).retries"}, []string{a.ID}}, // as the runtime prints it
		{corepipe.CrashFilter{Query: "idleWorker"}, nil},                        // not the crashing goroutine
		{corepipe.CrashFilter{Query: "index"}, []string{c.ID, b.ID}},            // newest first
		{corepipe.CrashFilter{Query: "bill"}, nil},                              // whole words
		{corepipe.CrashFilter{Query: "bill*"}, []string{c.ID, b.ID}},            // a prefix
		{corepipe.CrashFilter{Query: "bill* refund"}, []string{c.ID}},           // a prefix and a word
		{corepipe.CrashFilter{Query: "*"}, nil},                                 // a star alone is text
		{corepipe.CrashFilter{Query: "index", Node: "node-b"}, []string{b.ID}},  // with a filter
		{corepipe.CrashFilter{Query: "LENGTH 3"}, []string{b.ID}},               // any case
		{corepipe.CrashFilter{Query: `NEAR("index" ) OR * "`}, nil},             // FTS5 syntax is text
		{corepipe.CrashFilter{Query: "   "}, []string{c.ID, b.ID, a.ID}},        // no words: no search
		{corepipe.CrashFilter{Query: "index", Limit: 1}, []string{c.ID}},        // paging
		{corepipe.CrashFilter{Query: "nothing-matches-this"}, nil},
	} {
		got, _ := list(t, x, tc.f)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.f, got, tc.want)
		}
	}
	_, next := list(t, x, corepipe.CrashFilter{Query: "index", Limit: 1})
	if got, _ := list(t, x, corepipe.CrashFilter{Query: "index", Limit: 1, Cursor: next}); !slices.Equal(got, []string{b.ID}) {
		t.Errorf("second page: %v", got)
	}
	// Re-analysed under a new title: found by the new text only.
	a.Title = "deadlock in main.drain"
	a.Panic = nil
	a.Goroutines[0].Frames = []corepipe.Frame{{Function: "main.drain"}}
	upsert(t, x, a)
	if got, _ := list(t, x, corepipe.CrashFilter{Query: "retries"}); got != nil {
		t.Errorf("the old text is still found: %v", got)
	}
	if got, _ := list(t, x, corepipe.CrashFilter{Query: "drain"}); !slices.Equal(got, []string{a.ID}) {
		t.Errorf("the new text: %v", got)
	}
	if _, _, err := x.Crashes(context.Background(), corepipe.CrashFilter{Query: strings.Repeat("w ", 50)}); !errors.Is(err, corepipe.ErrInvalid) {
		t.Errorf("a query of 50 words: %v", err)
	}
}

// TestMigrateFromV2 opens an index of the schema before triage, with
// crashes and groups in it: they stay, and become searchable and triageable.
func TestMigrateFromV2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	execFile(t, path, migrationSQL(t, "index/0001_crashes.sql"), migrationSQL(t, "index/0002_groups.sql"))
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	const sig = "gocrash/v1:0202"
	r := searchReport(1, "nil map write in main.store", "assignment to entry in nil map", "main.store")
	r.Signature = sig
	summary, _ := json.Marshal(r.Summary())
	for _, q := range []struct {
		query string
		args  []any
	}{
		{`CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`, nil},
		{`INSERT INTO migrations VALUES (1, 'index/0001_crashes.sql', 0), (2, 'index/0002_groups.sql', 0)`, nil},
		{`PRAGMA user_version = 2`, nil},
		{`INSERT INTO crashes (id, captured_at, node, namespace, pod, exe, exe_base, signature, status, summary, version, workload)
			VALUES (?, ?, 'node-a', 'prod', 'server-0', '/usr/bin/server', 'server', ?, 'analyzed', ?, 'v1', 'prod/server-0')`,
			[]any{r.ID, r.CapturedAt.UnixNano(), sig, summary}},
		{`INSERT INTO groups VALUES (?, 'nil map write in main.store', 7, ?, ?, 'v0', 'v1', 'ongoing', '["node-a"]', '["prod/server-0"]')`,
			[]any{sig, r.CapturedAt.UnixNano(), r.CapturedAt.UnixNano()}},
	} {
		if _, err := db.Exec(q.query, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	x := openPath(t, path)
	if vs := recorded(t, path); !slices.Equal(vs, []int{1, 2, 3, 4, 5}) {
		t.Errorf("recorded %v", vs)
	}
	g := group(t, x, sig)
	if g.Count != 7 || g.Status != corepipe.GroupOngoing || g.FirstVersion != "v0" || g.Triage != nil {
		t.Errorf("the group of the old schema: %+v", g)
	}
	if got, _ := list(t, x, corepipe.CrashFilter{Query: "nil map"}); !slices.Equal(got, []string{r.ID}) {
		t.Errorf("search over the old crashes: %v", got)
	}
	if got, _ := list(t, x, corepipe.CrashFilter{Query: "main.store"}); !slices.Equal(got, []string{r.ID}) {
		t.Errorf("search over the old crashes' top frames: %v", got)
	}
	if g := setTriage(t, x, sig, corepipe.TriageChange{Status: corepipe.TriageResolved}); g.Status != corepipe.GroupResolved || g.Count != 7 {
		t.Errorf("resolving the old group: %+v", g)
	}
}

func TestOwnersRules(t *testing.T) {
	x, _ := openTest(t)
	rules, err := corepipe.ParseOwners(strings.NewReader("main. team-api\n"))
	if err != nil {
		t.Fatal(err)
	}
	x.SetOwners(rules)
	const sig = "gocrash/v1:0a0a"
	crash := func(at time.Duration) *corepipe.Report {
		r := liveReport(sig, at, "v1")
		r.CrashingGoroutine = 1
		r.Goroutines = []corepipe.Goroutine{{ID: 1, Frames: []corepipe.Frame{{Function: "main.handle"}}}}
		return r
	}
	upsert(t, x, crash(-time.Hour))
	if g := group(t, x, sig); g.Assignee != "team-api" {
		t.Fatalf("owned by %q, want the rule's team-api", g.Assignee)
	}
	if owned, _, err := x.Groups(context.Background(), corepipe.GroupFilter{Assignee: "team-api"}); err != nil || len(owned) != 1 {
		t.Errorf("groups of team-api: %d %v", len(owned), err)
	}
	bob := "bob"
	setTriage(t, x, sig, corepipe.TriageChange{Assignee: &bob})
	upsert(t, x, crash(time.Second))
	if g := group(t, x, sig); g.Assignee != "bob" {
		t.Fatalf("after people assigned it: owned by %q", g.Assignee)
	}
	nobody := ""
	if g := setTriage(t, x, sig, corepipe.TriageChange{Assignee: &nobody}); g.Assignee != "" {
		t.Fatalf("unassigned: owned by %q", g.Assignee)
	}
	upsert(t, x, crash(2*time.Second))
	if g := group(t, x, sig); g.Assignee != "team-api" {
		t.Errorf("unassigned, then a crash: owned by %q, want the rule's again", g.Assignee)
	}
}

// TestNotifierReadsTheAPIsIndex: the notifier opens the API's index file
// beside it (the chart runs it in the API's pod, compose on the API's
// volume) and reads the decisions the API writes, also while the API holds
// a write transaction open, as a rebuild does, and opens it then too.
func TestNotifierReadsTheAPIsIndex(t *testing.T) {
	api, path := openTest(t)
	notifier := openPath(t, path)
	const sig = "gocrash/v1:1a01"
	upsert(t, api, liveReport(sig, -time.Hour, "v1"))
	setTriage(t, api, sig, corepipe.TriageChange{Status: corepipe.TriageIgnored})
	tx, err := api.db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`DELETE FROM triage`); err != nil {
		t.Fatal(err)
	}
	d, err := notifier.Triage(context.Background(), sig)
	if err != nil || d == nil || d.Status != corepipe.TriageIgnored {
		t.Fatalf("the notifier's read during the API's write: %+v, %v", d, err)
	}
	// A notifier that starts meanwhile opens the file without waiting for
	// the writer: it waited for the lock, and failed after busyTimeout.
	late, err := Open(path)
	if err != nil {
		t.Fatalf("open during the API's write: %v", err)
	}
	defer late.Close()
	if d, err := late.Triage(context.Background(), sig); err != nil || d == nil {
		t.Errorf("the late notifier's read: %+v, %v", d, err)
	}
}
