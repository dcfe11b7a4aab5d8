package spool

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

// FuzzManifest: whatever a manifest file holds, Manifest returns the crash
// of its own entry or an error marked ErrInvalid, and reads no more than
// MaxManifestSize of it.
func FuzzManifest(f *testing.F) {
	id := corepipe.NewID(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	valid, _ := json.Marshal(corepipe.Crash{Schema: corepipe.ManifestSchema, ID: id, Node: "n"})
	other, _ := json.Marshal(corepipe.Crash{ID: corepipe.NewID(time.Now())})
	for _, seed := range [][]byte{valid, other, nil, []byte("{"), []byte(`{"id":1}`), []byte(`[]`), []byte(`{"id":"` + id + `"} trailing`)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		d := filepath.Join(dir, id)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, ManifestFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Entry{ID: id, Dir: d}.Manifest()
		if err != nil {
			if !errors.Is(err, corepipe.ErrInvalid) {
				t.Fatalf("Manifest error %v is not ErrInvalid", err)
			}
			return
		}
		if c.ID != id {
			t.Fatalf("Manifest of entry %s returned crash %q", id, c.ID)
		}
	})
}

// FuzzMarker: a marker reads as stored, with its content only when it is a
// well-formed "<sha256> <size>", and one the agent writes reads back as
// written.
func FuzzMarker(f *testing.F) {
	for _, seed := range []string{"", strings.Repeat("0f", 32) + " 42\n", strings.Repeat("0f", 32) + " -1", "x y", strings.Repeat("a", 200)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, content string) {
		s := Spool{Dir: t.TempDir()}
		os.Mkdir(filepath.Join(s.Dir, ExecutablesDir), 0o700)
		if err := os.WriteFile(filepath.Join(s.Dir, ExecutablesDir, "id"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		m, ok := s.ExecutableStored("id")
		if !ok {
			t.Fatal("a regular marker file reads as not stored")
		}
		if m.SHA256 != "" && (len(m.SHA256) != 64 || m.Size < 0) {
			t.Fatalf("marker %q read as %+v", content, m)
		}
		if m.SHA256 == "" {
			return
		}
		if err := s.MarkExecutableStored("again", m); err != nil {
			t.Fatal(err)
		}
		if got, ok := s.ExecutableStored("again"); !ok || got != m {
			t.Fatalf("marker written as %+v reads back as %+v, %v", m, got, ok)
		}
	})
}

// FuzzRateState: a state that parses writes back to the same state.
func FuzzRateState(f *testing.F) {
	for _, seed := range []string{"1 2 3 4\n", "", "1 2 3", "-1 2 3 4", "9223372036854775807 1 1 1", " 1  2 3 4 "} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b string) {
		st, ok := ParseRateState([]byte(b))
		if !ok {
			return
		}
		again, ok := ParseRateState([]byte(st.String()))
		if !ok || again != st {
			t.Fatalf("%q parsed as %+v, written as %q, read back as %+v, %v", b, st, st.String(), again, ok)
		}
	})
}
