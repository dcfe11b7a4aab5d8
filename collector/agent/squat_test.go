package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/blobtest"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestSquattedBuildIDDoesNotPoison: a program whose notes claim another's
// build ID crashes first and its executable is stored under that ID. The
// victim's next crash must still get its own executable stored, under its
// sha256, with a note; the squatter's object stays where it is, and a later
// crash of the victim that the collector did not copy finds the right key.
func TestSquattedBuildIDDoesNotPoison(t *testing.T) {
	r := newRig(t, nil)
	squatter, victim, again := newCrash(1), newCrash(2), newCrash(3)
	writeEntry(t, r.spool.Dir, squatter, []byte("core 1"), []byte("\x7fELF squatter"))
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	victim.Executable.SHA256 = sha256Hex("\x7fELF victim!!")
	writeEntry(t, r.spool.Dir, victim, []byte("core 2"), []byte("\x7fELF victim!!"))
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	var stored corepipe.Crash
	json.Unmarshal(blobtest.Read(t, r.blobs, corepipe.ManifestKey(victim)), &stored)
	wantKey := corepipe.ExecutableKey(victim.Executable.SHA256)
	if stored.Executable.Key != wantKey {
		t.Fatalf("victim's executable key %q, want %q; notes %q", stored.Executable.Key, wantKey, stored.Notes)
	}
	if got := blobtest.Read(t, r.blobs, wantKey); string(got) != "\x7fELF victim!!" {
		t.Errorf("victim's stored executable %q", got)
	}
	if got := blobtest.Read(t, r.blobs, corepipe.ExecutableKey("abc123")); string(got) != "\x7fELF squatter" {
		t.Errorf("object under the build ID replaced: %q", got)
	}
	found := false
	for _, n := range stored.Notes {
		found = found || strings.Contains(n, "already stored with other content")
	}
	if !found {
		t.Errorf("no note of the collision: %q", stored.Notes)
	}
	// The marker under the build ID still names the squatter's content, so
	// collectors keep comparing; the sha256 is marked for the victim.
	if m, ok := r.spool.ExecutableStored("abc123"); !ok || m.SHA256 == victim.Executable.SHA256 {
		t.Errorf("build ID marker %+v says the victim's content", m)
	}
	if _, ok := r.spool.ExecutableStored(victim.Executable.SHA256); !ok {
		t.Error("victim's sha256 not marked stored")
	}
	again.Executable.SHA256 = victim.Executable.SHA256
	writeEntry(t, r.spool.Dir, again, []byte("core 3"), nil)
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(blobtest.Read(t, r.blobs, corepipe.ManifestKey(again)), &stored)
	if stored.Executable.Key != wantKey {
		t.Errorf("uncopied victim crash's executable key %q, want %q", stored.Executable.Key, wantKey)
	}
}

// TestSameContentDeduplicated: the same bytes under the same build ID are
// stored once and the manifest points at them.
func TestSameContentDeduplicated(t *testing.T) {
	r := newRig(t, nil)
	a, b := newCrash(1), newCrash(2)
	writeEntry(t, r.spool.Dir, a, []byte("core 1"), []byte("\x7fELF same"))
	writeEntry(t, r.spool.Dir, b, []byte("core 2"), []byte("\x7fELF same"))
	if _, err := r.agent.ShipAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	var stored corepipe.Crash
	json.Unmarshal(blobtest.Read(t, r.blobs, corepipe.ManifestKey(b)), &stored)
	if stored.Executable.Key != corepipe.ExecutableKey("abc123") || len(stored.Notes) != 0 {
		t.Errorf("second copy: key %q, notes %q", stored.Executable.Key, stored.Notes)
	}
	if m, _ := r.spool.ExecutableStored("abc123"); m.SHA256 != sha256Hex("\x7fELF same") {
		t.Errorf("marker %+v", m)
	}
}

// TestExecutableNotMatchingManifest: a copy whose bytes are not what the
// collector hashed is not stored as that executable.
func TestExecutableNotMatchingManifest(t *testing.T) {
	r := newRig(t, nil)
	c := newCrash(1)
	c.Executable.SHA256 = sha256Hex("something else")
	writeEntry(t, r.spool.Dir, c, []byte("core"), []byte("\x7fELF exe"))
	r.agent.ShipAll(context.Background())
	if _, err := r.blobs.Stat(context.Background(), corepipe.ExecutableKey("abc123")); err == nil {
		t.Error("executable stored although its sha256 does not match the manifest")
	}
}
