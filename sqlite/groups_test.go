package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

// groupReport is a crash of signature sig, captured at base+at, from build
// version on node, in pod.
func groupReport(sig string, at time.Duration, version, node, pod string) *corepipe.Report {
	r := report(0)
	r.CapturedAt = base.Add(at)
	r.ID = corepipe.NewID(r.CapturedAt)
	r.Signature = sig
	r.Title = "nil pointer dereference in main.handle " + version
	r.Node = node
	r.Container = &corepipe.Container{Namespace: "prod", Pod: pod}
	r.Go = &corepipe.GoInfo{MainVersion: version}
	return r
}

func group(t *testing.T, x *Index, sig string) *corepipe.Group {
	t.Helper()
	g, err := x.Group(context.Background(), sig)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGroupAcrossVersions(t *testing.T) {
	x, _ := openTest(t)
	const sig = "gocrash/v1:1111"
	steps := []struct {
		r    *corepipe.Report
		want corepipe.GroupStatus
	}{
		{groupReport(sig, 0, "v1.0.0", "node-a", "api-0"), corepipe.GroupNew},
		{groupReport(sig, time.Hour, "v1.0.0", "node-b", "api-1"), corepipe.GroupOngoing},
		{groupReport(sig, 2*time.Hour, "v1.1.0", "node-a", "api-0"), corepipe.GroupOngoing},
		// Quiet for three days, then a newer build crashes the same way.
		{groupReport(sig, 74*time.Hour, "v1.2.0", "node-c", "api-2"), corepipe.GroupRegressed},
	}
	for i, s := range steps {
		upsert(t, x, s.r)
		if g := group(t, x, sig); g.Status != s.want || g.Count != int64(i+1) {
			t.Fatalf("after crash %d: status %s count %d, want %s %d", i, g.Status, g.Count, s.want, i+1)
		}
	}
	g := group(t, x, sig)
	want := &corepipe.Group{
		Signature: sig, Title: steps[3].r.Title, Count: 4,
		FirstSeen: base, LastSeen: base.Add(74 * time.Hour),
		FirstVersion: "v1.0.0", LastVersion: "v1.2.0", Status: corepipe.GroupRegressed,
		Nodes:     []string{"node-a", "node-b", "node-c"},
		Workloads: []string{"prod/api-0", "prod/api-1", "prod/api-2"},
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("group\n got %+v\nwant %+v", g, want)
	}

	versions, err := x.Versions(context.Background(), sig)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range versions {
		got = append(got, v.Value)
	}
	if !slices.Equal(got, []string{"v1.2.0", "v1.1.0", "v1.0.0"}) || versions[2].Count != 2 ||
		!versions[2].FirstSeen.Equal(base) || !versions[2].LastSeen.Equal(base.Add(time.Hour)) {
		t.Errorf("versions = %+v", versions)
	}
	workloads, err := x.Workloads(context.Background(), sig)
	if err != nil {
		t.Fatal(err)
	}
	if len(workloads) != 3 || workloads[0].Value != "prod/api-2" || workloads[2].Value != "prod/api-1" {
		t.Errorf("workloads = %+v", workloads)
	}

	counts, err := x.Occurrences(context.Background(), sig, base, 24*time.Hour, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(counts, []int64{3, 0, 0, 1}) {
		t.Errorf("daily occurrences = %v, want [3 0 0 1]", counts)
	}
	if _, err := x.Occurrences(context.Background(), sig, base, 0, 4); !errors.Is(err, corepipe.ErrInvalid) {
		t.Errorf("zero step: err = %v", err)
	}
}

// TestGroupCountsOnce re-indexes the same reports as redeliveries, a
// restart and a late pending copy would: every crash counts once.
func TestGroupCountsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	x, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const sig = "gocrash/v1:2222"
	a := groupReport(sig, 0, "v1", "node-a", "p")
	b := groupReport(sig, time.Minute, "v1", "node-a", "p")
	upsert(t, x, a, b, a, b, a)
	if g := group(t, x, sig); g.Count != 2 {
		t.Errorf("count = %d after re-indexing, want 2", g.Count)
	}
	x.Close()

	x, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	late := *b
	late.Status = corepipe.StatusPending
	late.Signature = ""
	late.Title = ""
	upsert(t, x, a, b, &late)
	if g := group(t, x, sig); g.Count != 2 {
		t.Errorf("count = %d after a restart, want 2", g.Count)
	}
	s, err := x.Crash(context.Background(), b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != corepipe.StatusAnalyzed || s.Signature != sig {
		t.Errorf("a late pending report replaced the analyzed one: %s %q", s.Status, s.Signature)
	}
}

func TestPendingThenAnalyzed(t *testing.T) {
	x, _ := openTest(t)
	r := groupReport("gocrash/v1:3333", 0, "v1", "n", "p")
	pending := *r
	pending.Status, pending.Signature = corepipe.StatusPending, ""
	upsert(t, x, &pending)
	if gs, _, err := x.Groups(context.Background(), corepipe.GroupFilter{}); err != nil || len(gs) != 0 {
		t.Fatalf("a pending report without signature made groups %v, %v", gs, err)
	}
	upsert(t, x, r)
	if g := group(t, x, r.Signature); g.Count != 1 {
		t.Errorf("count = %d", g.Count)
	}
	failed := *r
	failed.Status = corepipe.StatusFailed
	upsert(t, x, &failed)
	if s, _ := x.Crash(context.Background(), r.ID); s.Status != corepipe.StatusFailed {
		t.Errorf("status = %s: a failed report replaces an analyzed one (last wins)", s.Status)
	}
}

// TestGroupMove re-analyses a crash under a new signature: it leaves its old
// group, whose first and last seen are folded again from what is left, and
// joins the new one. A group left empty disappears.
func TestGroupMove(t *testing.T) {
	x, _ := openTest(t)
	const old, moved = "gocrash/v1:aaaa", "gocrash/v1:bbbb"
	a := groupReport(old, 0, "v1", "node-a", "p0")
	b := groupReport(old, time.Hour, "v2", "node-b", "p1")
	upsert(t, x, a, b)

	b2 := *b
	b2.Signature = moved
	upsert(t, x, &b2)
	g := group(t, x, old)
	if g.Count != 1 || !g.LastSeen.Equal(a.CapturedAt) || g.LastVersion != "v1" || !slices.Equal(g.Nodes, []string{"node-a"}) {
		t.Errorf("old group after the move: %+v", g)
	}
	if g := group(t, x, moved); g.Count != 1 || g.Status != corepipe.GroupNew {
		t.Errorf("new group: %+v", g)
	}

	a2 := *a
	a2.Signature = moved
	upsert(t, x, &a2)
	if _, err := x.Group(context.Background(), old); !errors.Is(err, corepipe.ErrNotFound) {
		t.Errorf("empty group still there: %v", err)
	}
	if g := group(t, x, moved); g.Count != 2 || !g.FirstSeen.Equal(a.CapturedAt) {
		t.Errorf("new group after both moved: %+v", g)
	}
	if ids, _ := list(t, x, corepipe.CrashFilter{Signature: moved}); len(ids) != 2 {
		t.Errorf("crashes of the new signature: %v", ids)
	}
}

func TestGroupsOrderFilterPaging(t *testing.T) {
	x, _ := openTest(t)
	sigs := []string{"gocrash/v1:01", "gocrash/v1:02", "gocrash/v1:03", "gocrash/v1:04", "gocrash/v1:05"}
	for i, sig := range sigs {
		upsert(t, x, groupReport(sig, time.Duration(i)*time.Hour, "v1", "n", "p"))
	}
	// Activity on the oldest group brings it to the top.
	upsert(t, x, groupReport(sigs[0], 10*time.Hour, "v1", "n", "p"))

	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		gs, next, err := x.Groups(context.Background(), corepipe.GroupFilter{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			got = append(got, g.Signature)
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		cursor = next
	}
	want := []string{sigs[0], sigs[4], sigs[3], sigs[2], sigs[1]}
	if !slices.Equal(got, want) {
		t.Errorf("groups = %v, want %v", got, want)
	}

	gs, _, err := x.Groups(context.Background(), corepipe.GroupFilter{Status: corepipe.GroupOngoing})
	if err != nil || len(gs) != 1 || gs[0].Signature != sigs[0] {
		t.Errorf("status filter: %v %v", gs, err)
	}
	gs, _, err = x.Groups(context.Background(), corepipe.GroupFilter{Since: base.Add(3 * time.Hour)})
	if err != nil || len(gs) != 3 {
		t.Errorf("since filter: %d groups, %v", len(gs), err)
	}
	for _, c := range []string{"nope", cursorKey{at: 1, key: corepipe.NewID(base)}.encode(crashCursor)} {
		if _, _, err := x.Groups(context.Background(), corepipe.GroupFilter{Cursor: c}); !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("cursor %q: err = %v", c, err)
		}
	}
	for _, sig := range []string{"", "has space", "ctl\x00", string(make([]byte, 300))} {
		if _, err := x.Group(context.Background(), sig); !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("signature %q: err = %v", sig, err)
		}
	}
	if _, err := x.Group(context.Background(), "gocrash/v1:ffff"); !errors.Is(err, corepipe.ErrNotFound) {
		t.Errorf("unknown group: err = %v", err)
	}
}

// snapshot is everything the index answers, for comparing two indexes.
func snapshot(t *testing.T, x *Index) (crashes []*corepipe.Report, groups []*corepipe.Group) {
	t.Helper()
	crashes, _, err := x.Crashes(context.Background(), corepipe.CrashFilter{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	groups, _, err = x.Groups(context.Background(), corepipe.GroupFilter{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return crashes, groups
}

// TestRebuild refills an index that saw crashes out of order, a re-analysis
// and stale rows: the rebuilt index is the one the final reports give.
func TestRebuild(t *testing.T) {
	live, _ := openTest(t)
	var final []*corepipe.Report
	for i := range 30 {
		sig := []string{"gocrash/v1:aa", "gocrash/v1:bb", "gocrash/v1:cc"}[i%3]
		final = append(final, groupReport(sig, time.Duration(i)*7*time.Hour, []string{"v1", "v2"}[i/15], "n", "p"))
	}
	for _, r := range slices.Backward(final) {
		upsert(t, live, r)
	}
	moved := *final[4]
	moved.Signature = "gocrash/v1:dd"
	upsert(t, live, &moved)
	final[4] = &moved

	rebuilt, _ := openTest(t)
	upsert(t, rebuilt, report(9999)) // stale: not among the stored reports
	rebuild(t, rebuilt, final...)
	fresh, _ := openTest(t)
	upsert(t, fresh, final...)

	wantCrashes, wantGroups := snapshot(t, fresh)
	gotCrashes, gotGroups := snapshot(t, rebuilt)
	if !reflect.DeepEqual(gotCrashes, wantCrashes) {
		t.Errorf("rebuilt crashes differ: %d rows, want %d", len(gotCrashes), len(wantCrashes))
	}
	if !reflect.DeepEqual(gotGroups, wantGroups) {
		t.Errorf("rebuilt groups differ:\n got %v\nwant %v", gotGroups, wantGroups)
	}
	// The live index saw the same crashes in another order: counts, seen
	// times and versions agree; only the status history may differ.
	_, liveGroups := snapshot(t, live)
	if len(liveGroups) != len(wantGroups) {
		t.Fatalf("live has %d groups, rebuilt %d", len(liveGroups), len(wantGroups))
	}
	for i, g := range liveGroups {
		w := wantGroups[i]
		if g.Signature != w.Signature || g.Count != w.Count || !g.FirstSeen.Equal(w.FirstSeen) || !g.LastSeen.Equal(w.LastSeen) ||
			g.FirstVersion != w.FirstVersion || g.LastVersion != w.LastVersion {
			t.Errorf("live group %+v, rebuilt %+v", g, w)
		}
	}

	failing := errors.New("blob store down")
	err := rebuilt.Rebuild(context.Background(), func(put func(*corepipe.Report) error) error {
		put(report(1))
		return failing
	})
	if !errors.Is(err, failing) {
		t.Errorf("err = %v", err)
	}
	if c, _ := snapshot(t, rebuilt); len(c) != len(wantCrashes) {
		t.Errorf("a failed rebuild changed the index: %d rows", len(c))
	}
	n, g, err := rebuilt.Size(context.Background())
	if err != nil || n != int64(len(final)) || g != 4 {
		t.Errorf("Size = %d, %d, %v", n, g, err)
	}
}

// TestMigrateFromV1 opens an index written before groups existed: its
// crashes get their groups.
func TestMigrateFromV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := migrationFS.ReadFile("migration/index/0001_crashes.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(string(v1) + "; PRAGMA user_version = 1"); err != nil {
		t.Fatal(err)
	}
	const sig = "gocrash/v1:0101"
	for i := range 3 {
		r := groupReport(sig, time.Duration(i)*time.Hour, "v1", "n", "p")
		summary, _ := json.Marshal(r.Summary())
		if _, err := db.Exec(`INSERT INTO crashes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.CapturedAt.UnixNano(), r.Node, "prod", "p", "/usr/bin/server", "server", sig, r.Status, summary); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	x := openPath(t, path)
	if g := group(t, x, sig); g.Count != 3 || g.FirstVersion != "v1" || g.Status != corepipe.GroupOngoing {
		t.Errorf("backfilled group: %+v", g)
	}
	if vs, err := x.Versions(context.Background(), sig); err != nil || len(vs) != 1 || vs[0].Value != "v1" {
		t.Errorf("backfilled versions: %+v %v", vs, err)
	}
}
