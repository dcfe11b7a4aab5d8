package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

// TestBatchAndRebuildFoldAsLive indexes a few thousand crashes of many
// groups, with regressions, triage decisions between two halves of the
// stream and crashes re-analysed under another signature: one Upsert each
// as the follower did, and UpsertBatch a batch at a time as it now does,
// must fold the same groups and histories. A Rebuild of the first index from
// the final reports must fold what upserting those live does. (Not quite the
// first index itself: a re-analysed crash joined its new group's list of
// nodes in the order it arrived, and a rebuild takes it in time order.)
func TestBatchAndRebuildFoldAsLive(t *testing.T) {
	const n, sigs = 3000, 40
	now := time.Now().UTC()
	sig := func(i int) string { return fmt.Sprintf("gocrash/v1:%04x", i%sigs) }
	var reports []*corepipe.Report
	for i := range n {
		// The first half before the triage decisions, which are made on
		// the wall clock, the second half after; a crash about every hour,
		// so that each group goes quiet for more than a day between two.
		at := time.Duration(i-n/2) * 58 * time.Minute
		r := groupReport(sig(i*7), 0, fmt.Sprintf("v1.%d.0", i*4/n), fmt.Sprintf("node-%d", i%60), fmt.Sprintf("pod-%d", i%70))
		r.CapturedAt = now.Add(at)
		r.ID = corepipe.NewID(r.CapturedAt)
		reports = append(reports, r)
	}
	// Re-analyses that arrive with the second half: crashes of the first
	// half move to another group.
	var moves []*corepipe.Report
	for i := 0; i < n/2; i += 97 {
		m := *reports[i]
		m.Signature, m.Status = sig(i+1), corepipe.StatusFailed
		moves = append(moves, &m)
	}
	decide := func(x *Index) {
		bob := "bob"
		for s, c := range map[string]corepipe.TriageChange{
			sig(0): {Status: corepipe.TriageResolved, ResolvedIn: "v1.2.0"},
			sig(1): {Status: corepipe.TriageResolved},
			sig(2): {Status: corepipe.TriageIgnored, IgnoreCount: 5},
			sig(3): {Assignee: &bob},
		} {
			setTriage(t, x, s, c)
		}
	}
	second := slices.Concat(reports[n/2:n/2+400], moves, reports[n/2+400:])

	live, _ := openTest(t)
	upsert(t, live, reports[:n/2]...)
	decide(live)
	upsert(t, live, second...)

	batched, _ := openTest(t)
	batches := func(rs []*corepipe.Report) {
		for chunk := range slices.Chunk(rs, 256) {
			if err := batched.UpsertBatch(context.Background(), chunk); err != nil {
				t.Fatal(err)
			}
		}
	}
	batches(reports[:n/2])
	decide(batched)
	batches(second)

	want := foldedGroups(t, live)
	if !strings.Contains(want, `"status":"regressed"`) || !strings.Contains(want, "|regressed|") || !strings.Contains(want, "no longer ignored") {
		t.Fatalf("the fixture has no regression or unignore to compare:\n%s", want)
	}
	if got := foldedGroups(t, batched); got != want {
		t.Errorf("batched index differs from the live one:\n%s", lineDiff(want, got))
	}

	final := slices.Clone(reports)
	for _, m := range moves {
		final[slices.IndexFunc(final, func(r *corepipe.Report) bool { return r.ID == m.ID })] = m
	}
	fresh, _ := openTest(t)
	upsert(t, fresh, final[:n/2]...)
	decide(fresh)
	upsert(t, fresh, final[n/2:]...)
	want = foldedGroups(t, fresh)
	rebuild(t, live, final...)
	if got := foldedGroups(t, live); got != want {
		t.Errorf("rebuilt index differs from the one upserted live:\n%s", lineDiff(want, got))
	}
}

// foldedGroups is the groups table and the triage history, a line a row,
// with the wall-clock times of people's decisions left out (each index
// had its own).
func foldedGroups(t *testing.T, x *Index) string {
	t.Helper()
	var lines []string
	rows, err := x.db.Query(`SELECT signature, title, count, first_seen, last_seen, first_version, last_version, status,
		nodes, workloads, coalesce(triage, ''), observed, assignee FROM groups ORDER BY signature`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			sig, title, firstV, lastV, status, nodes, workloads, triage, observed, assignee string
			count, first, last                                                              int64
		)
		if err := rows.Scan(&sig, &title, &count, &first, &last, &firstV, &lastV, &status, &nodes, &workloads, &triage, &observed, &assignee); err != nil {
			t.Fatal(err)
		}
		if triage != "" {
			var d corepipe.Triage
			if err := json.Unmarshal([]byte(triage), &d); err != nil {
				t.Fatal(err)
			}
			d.DecidedAt = time.Time{}
			b, _ := json.Marshal(d)
			triage = string(b)
		}
		lines = append(lines, strings.Join([]string{sig, title, fmt.Sprint(count, first, last), firstV, lastV, status, nodes, workloads, triage, observed, assignee}, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	hist, err := x.db.Query(`SELECT signature, who, change, coalesce(crash_id, ''), CASE WHEN crash_id IS NULL THEN 0 ELSE at END
		FROM triage_history ORDER BY signature, seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer hist.Close()
	for hist.Next() {
		var sig, who, change, crash string
		var at int64
		if err := hist.Scan(&sig, &who, &change, &crash, &at); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("history %s|%s|%s|%s|%d", sig, who, change, crash, at))
	}
	if err := hist.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// lineDiff lists the lines of want and got that the other lacks.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}
