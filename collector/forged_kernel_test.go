package collector_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/collector"
	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit/blobtest"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// published records what the agent queued.
type published struct {
	mu      sync.Mutex
	crashes map[int]*corepipe.Crash // by pid
}

func (p *published) PublishCrash(_ context.Context, c *corepipe.Crash) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cp := *c
	p.crashes[c.Process.PID] = &cp
	return nil
}

// TestKernelHostileForgedBuildID: an unprivileged program built with
// another program's GNU and Go build IDs crashes first, twice, with a rate
// limit of one core per executable. Before, its notes chose both the rate
// limit's bucket and the executables/<id> key: the victim's next crash was
// rate_limited and its executable "already stored", the squatter's. Now
// the victim's crash is captured whole, with its own executable, which is
// what a debugger downloads.
func TestKernelHostileForgedBuildID(t *testing.T) {
	rig := collector.NewKernelRig(t, spool.Settings{RateLimit: 1, RateWindow: 3600e9})
	victim := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": collector.HolderSource}})
	ids := crashtest.BuildIDs(t, victim)
	if ids.GNU == "" || ids.Go == "" {
		t.Fatalf("victim's build IDs %+v", ids)
	}
	squatterSrc := strings.Replace(collector.HolderSource, `"ready\n"`, `"ready\n" + tag`, 1) + "\nvar tag = \"\"\n"
	built := crashtest.BuildGo(t, crashtest.Program{
		Files: map[string]string{"main.go": squatterSrc},
		Flags: []string{"-ldflags=-buildid=" + ids.Go + " -B 0x" + ids.GNU},
	})
	squatter := filepath.Join(rig.Dir(), "squatter")
	b, _ := os.ReadFile(built)
	if err := os.WriteFile(squatter, b, 0o755); err != nil {
		t.Fatal(err)
	}
	forged := crashtest.BuildIDs(t, squatter)
	victimBytes, _ := os.ReadFile(victim)
	if forged != ids || bytes.Equal(b, victimBytes) {
		t.Fatalf("squatter's build IDs %+v, want the victim's %+v, with other content", forged, ids)
	}

	store, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pub := &published{crashes: map[int]*corepipe.Crash{}}
	ag := agent.New(agent.Config{Spool: spool.Spool{Dir: rig.Spool()}, Blobs: store, Queue: pub})
	ship := func() {
		t.Helper()
		if _, err := ag.ShipAll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var sq1, sq2, vic int
	rig.With(t, func() {
		sq1, _ = rig.Crash(t, squatter, nobody)
		ship()
		sq2, _ = rig.Crash(t, squatter, nobody)
		ship()
		vic, _ = rig.Crash(t, victim, nil)
		ship()
	})
	if c := pub.crashes[sq1]; c == nil || c.Core.Dropped != "" || c.Executable.Key != corepipe.ExecutableKey(ids.GNU) {
		t.Fatalf("squatter's first crash: %+v", c)
	}
	if c := pub.crashes[sq2]; c == nil || c.Core.Dropped != spool.DroppedRateLimited {
		t.Errorf("squatter's second crash not limited by its own budget: %+v", c)
	}
	c := pub.crashes[vic]
	if c == nil {
		t.Fatal("victim's crash not shipped")
	}
	t.Logf("victim: core %+v, executable %+v, notes %q", c.Core, c.Executable, c.Notes)
	if c.Core.Dropped != "" || c.Core.Truncated || c.Core.Key == "" {
		t.Errorf("victim's crash lost its core to the squatter: %+v, notes %q", c.Core, c.Notes)
	}
	sum := hexSHA(victimBytes)
	if c.Executable.SHA256 != sum || c.Executable.Key != corepipe.ExecutableKey(sum) {
		t.Fatalf("victim's executable %+v, want stored under its sha256 %s", c.Executable, sum)
	}
	if got := blobtest.Read(t, store, c.Executable.Key); !bytes.Equal(got, victimBytes) {
		t.Errorf("the executable a debugger downloads for the victim is not the victim's (%d bytes)", len(got))
	}
}

func hexSHA(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
