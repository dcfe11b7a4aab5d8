package sqlite

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

func TestExpiringCoresKeepExemplars(t *testing.T) {
	x, _ := openTest(t)
	var ids []string
	for i := range 8 {
		r := report(i)
		r.Artifacts.Core.Key = "cores/" + r.ID
		upsert(t, x, r)
		ids = append(ids, r.ID)
	}
	// Another group's only core, and a crash with no stored core.
	other := report(8)
	other.Signature, other.Artifacts.Core.Key = "gocrash/v1:bbbb", "cores/other"
	none := report(9)
	upsert(t, x, other, none)

	// Everything is old: each group keeps its first 2 and latest 2.
	got, err := x.ExpiringCores(t.Context(), base.Add(time.Hour), 2, 100)
	if err != nil {
		t.Fatal(err)
	}
	if want := ids[2:6]; !slices.Equal(got, want) {
		t.Errorf("ExpiringCores = %q, want %q", got, want)
	}
	// Only the crashes before 4s are old; the limit bounds a pass.
	if got, _ := x.ExpiringCores(t.Context(), base.Add(4*time.Second), 2, 100); !slices.Equal(got, ids[2:4]) {
		t.Errorf("ExpiringCores before 4s = %q, want %q", got, ids[2:4])
	}
	if got, _ := x.ExpiringCores(t.Context(), base.Add(time.Hour), 2, 1); !slices.Equal(got, ids[2:3]) {
		t.Errorf("ExpiringCores limit 1 = %q, want %q", got, ids[2:3])
	}
	if _, err := x.ExpiringCores(t.Context(), base, -1, 1); err == nil {
		t.Error("ExpiringCores with keep -1: no error")
	}
}

func TestExecutableNeededAndDelete(t *testing.T) {
	x, _ := openTest(t)
	exe := corepipe.ExeArtifact{BuildID: "abcd", Found: true, Key: corepipe.ExecutableKey("abcd")}
	stored, onNode, expired := report(0), report(1), report(2)
	for _, r := range []*corepipe.Report{stored, onNode, expired} {
		r.Artifacts.Executable = exe
	}
	stored.Artifacts.Core.Key = "cores/a"
	onNode.Artifacts.Core.Location = &corepipe.CoreLocation{State: corepipe.CoreOnNode, Node: "n"}
	expired.Artifacts.Core.Location = &corepipe.CoreLocation{State: corepipe.CoreExpired}
	upsert(t, x, stored, onNode, expired)

	needed := func() bool {
		t.Helper()
		ok, err := x.ExecutableNeeded(t.Context(), exe)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !needed() {
		t.Fatal("executable of a stored core: not needed")
	}
	for _, r := range []*corepipe.Report{stored, onNode} {
		if err := x.Delete(t.Context(), r.ID); err != nil {
			t.Fatal(err)
		}
	}
	if needed() {
		t.Error("executable of expired cores only: needed")
	}
	if err := x.Delete(t.Context(), stored.ID); err != nil {
		t.Errorf("Delete twice: %v", err)
	}
	if got, _ := list(t, x, corepipe.CrashFilter{}); !slices.Equal(got, []string{expired.ID}) {
		t.Errorf("after Delete the index lists %q, want %q", got, expired.ID)
	}
	g, err := x.Group(t.Context(), expired.Signature)
	if err != nil || g.Count != 1 {
		t.Errorf("group after Delete = %+v, %v; want count 1", g, err)
	}
	if err := x.Delete(t.Context(), expired.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Group(t.Context(), expired.Signature); err == nil {
		t.Error("a group with no crash left is still there")
	}
}

// An index made before core_stored learns which of its crashes have a
// stored core from their summaries.
func TestMigrateCoreStored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	var stmts []string
	for _, m := range []string{"0001_crashes", "0002_groups", "0003_triage", "0004_build_ids"} {
		stmts = append(stmts, migrationSQL(t, "index/"+m+".sql"))
	}
	r := report(1)
	r.Artifacts.Core.Key = "cores/x"
	summary, _ := json.Marshal(r.Summary())
	stmts = append(stmts, "PRAGMA user_version = 4",
		fmt.Sprintf(`INSERT INTO crashes (id, captured_at, node, namespace, pod, exe, exe_base, signature, status, summary)
			VALUES ('%s', %d, 'n', '', '', '', '', 'gocrash/v1:aaaa', 'analyzed', '%s')`, r.ID, r.CapturedAt.UnixNano(), summary))
	execFile(t, path, stmts...)
	x, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if got, err := x.ExpiringCores(t.Context(), base.Add(time.Hour), 0, 10); err != nil || !slices.Equal(got, []string{r.ID}) {
		t.Errorf("ExpiringCores after the migration = %q, %v; want %s", got, err, r.ID)
	}
}
