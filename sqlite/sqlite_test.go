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

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/notify"
)

// recorded lists the versions in a file's migrations table.
func recorded(t *testing.T, path string) []int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT version FROM migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func execFile(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
}

func migrationSQL(t *testing.T, name string) string {
	t.Helper()
	b, err := migrationFS.ReadFile("migration/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMigrationsAreNumberedFromOne(t *testing.T) {
	for _, kind := range []string{"index", "notify"} {
		ms, err := migrations(kind)
		if err != nil || len(ms) == 0 {
			t.Fatalf("%s: %v %v", kind, ms, err)
		}
		for i, m := range ms {
			if m.version != i+1 {
				t.Errorf("%s: migration %s has version %d, want %d", kind, m.name, m.version, i+1)
			}
		}
	}
	for name := range fills {
		if _, err := migrationFS.ReadFile("migration/" + name); err != nil {
			t.Errorf("fill of a migration that does not exist: %s", name)
		}
	}
}

func TestMigrateRecordsEachVersionOnce(t *testing.T) {
	x, path := openTest(t)
	x.Close()
	if vs := recorded(t, path); !slices.Equal(vs, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("recorded %v, want [1 2 3 4 5]", vs)
	}
	again, err := Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	again.Close()
	if vs := recorded(t, path); !slices.Equal(vs, []int{1, 2, 3, 4, 5}) {
		t.Errorf("after reopening, recorded %v", vs)
	}
}

// TestOpenIndexCountedInUserVersion opens an index written when PRAGMA
// user_version counted the migrations: nothing runs twice.
func TestOpenIndexCountedInUserVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	execFile(t, path, migrationSQL(t, "index/0001_crashes.sql"), migrationSQL(t, "index/0002_groups.sql"), "PRAGMA user_version = 2")
	x, err := Open(path)
	if err != nil {
		t.Fatalf("open an index of user_version 2: %v", err)
	}
	defer x.Close()
	if err := x.Upsert(context.Background(), report(1)); err != nil {
		t.Fatal(err)
	}
	// 1 and 2 as the pragma counted them, 3 to 5 applied now.
	if vs := recorded(t, path); !slices.Equal(vs, []int{1, 2, 3, 4, 5}) {
		t.Errorf("recorded %v, want [1 2 3 4 5]", vs)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	_, path := openTest(t)
	execFile(t, path, `INSERT INTO migrations (version, name, applied_at) VALUES (99, 'index/0099_future.sql', 0)`)
	if x, err := Open(path); err == nil || !strings.Contains(err.Error(), "newer") {
		if x != nil {
			x.Close()
		}
		t.Fatalf("open a file of a newer corepipe: %v", err)
	}
	legacy := filepath.Join(t.TempDir(), "old.db")
	execFile(t, legacy, "PRAGMA user_version = 9")
	if x, err := Open(legacy); err == nil || !strings.Contains(err.Error(), "newer") {
		if x != nil {
			x.Close()
		}
		t.Fatalf("open a file of user_version 9: %v", err)
	}
}

// TestOpenNotifyStoreOfOldNotifier opens a state file written by the notifier
// before it had migrations: its schema and records stay.
func TestOpenNotifyStoreOfOldNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notifier.db")
	schema := migrationSQL(t, "notify/0001_state.sql")
	execFile(t, path, schema, `INSERT INTO outbox (signature, message) VALUES ('gocrash/v1:01', '{}')`)
	st, err := OpenNotifyStore(path)
	if err != nil {
		t.Fatalf("open an old state file: %v", err)
	}
	defer st.Close()
	m, ok, err := st.Next(context.Background())
	if err != nil || !ok || m.Signature != "gocrash/v1:01" {
		t.Errorf("outbox of the old file: %+v %v %v", m, ok, err)
	}
	if vs := recorded(t, path); !slices.Equal(vs, []int{1}) {
		t.Errorf("recorded %v, want [1]", vs)
	}
}

func TestNotifyStoreRollsBackAFailedUpdate(t *testing.T) {
	st, err := OpenNotifyStore(filepath.Join(t.TempDir(), "notifier.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	boom := errors.New("boom")
	err = st.Update(ctx, func(tx notify.StoreTx) error {
		if err := tx.Enqueue("", []byte(`{}`)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	if n, err := st.OutboxLen(ctx); err != nil || n != 0 {
		t.Errorf("outbox after a failed update: %d %v", n, err)
	}
	err = st.Update(ctx, func(tx notify.StoreTx) error {
		if err := tx.AddMeta("n", 2); err != nil {
			return err
		}
		return tx.AddMeta("n", 3)
	})
	if err != nil {
		t.Fatal(err)
	}
	st.Update(ctx, func(tx notify.StoreTx) error {
		if v, ok, err := tx.Meta("n"); v != "5" || !ok || err != nil {
			t.Errorf("AddMeta twice: %q %v %v", v, ok, err)
		}
		return nil
	})
}

// TestFormatError holds a real write lock and lets a second connection,
// without a busy timeout, run into it.
func TestFormatError(t *testing.T) {
	_, path := openTest(t)
	holder, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	tx, err := holder.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`DELETE FROM crashes`); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = other.Exec(`DELETE FROM crashes`)
	if err == nil {
		t.Fatal("a second writer got the lock")
	}
	busy := FormatError(err)
	if !errors.Is(busy, corepipe.ErrUnavailable) || corepipe.ErrorMessage(busy) != "the database is busy" {
		t.Errorf("FormatError(%v) = %v (%q), want ErrUnavailable with a safe message", err, busy, corepipe.ErrorMessage(busy))
	}
	if !strings.Contains(busy.Error(), err.Error()) {
		t.Errorf("the driver's text is lost for the log: %v", busy)
	}
	if nf := FormatError(sql.ErrNoRows); !errors.Is(nf, corepipe.ErrNotFound) {
		t.Errorf("FormatError(ErrNoRows) = %v, want ErrNotFound", nf)
	}
	if other := errors.New("disk I/O"); FormatError(other) != other || FormatError(nil) != nil {
		t.Error("FormatError changes errors it does not know")
	}
}

// TestBuildIDsBackfilled opens an index of before build IDs were columns:
// its crashes are found by build ID at once, without a rebuild.
func TestBuildIDsBackfilled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	r := report(1)
	r.Artifacts.Executable.BuildID, r.Artifacts.Executable.GoBuildID = "4c1d2f", "abc/def"
	summary, err := json.Marshal(r.Summary())
	if err != nil {
		t.Fatal(err)
	}
	execFile(t, path, migrationSQL(t, "index/0001_crashes.sql"), migrationSQL(t, "index/0002_groups.sql"),
		migrationSQL(t, "index/0003_triage.sql"), "PRAGMA user_version = 3")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO crashes (id, captured_at, node, namespace, pod, exe, exe_base, signature, status, summary)
		VALUES (?, 0, 'n', '', '', '', '', '', 'analyzed', ?)`, r.ID, summary)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	x, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	for _, id := range []string{"4c1d2f", "abc/def"} {
		if got, _ := list(t, x, corepipe.CrashFilter{BuildID: id}); !slices.Equal(got, []string{r.ID}) {
			t.Errorf("crashes of build ID %s: %v, want [%s]", id, got, r.ID)
		}
	}
}
