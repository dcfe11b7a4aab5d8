package natstest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/corepipe/corepipe/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}

// streamMsgs creates a stream on url, publishes to it if asked, and returns
// how many messages it holds: proof that JetStream works there.
func streamMsgs(t *testing.T, url string, publish bool) uint64 {
	t.Helper()
	js := JetStream(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	if publish {
		if _, err := js.Publish(ctx, "t", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestStartEmbedded(t *testing.T) {
	e := StartEmbedded(t)
	if n := streamMsgs(t, e.ClientURL(), true); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

func TestExternalStopRestartKill(t *testing.T) {
	p := StartExternal(t)
	if n := streamMsgs(t, p.URL(), true); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}

	p.Stop()
	if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(p.URL(), "nats://"), time.Second); err == nil {
		conn.Close()
		t.Fatal("stopped server still accepts connections")
	}
	p.Stop() // stopping twice is harmless

	p.Restart()
	if n := streamMsgs(t, p.URL(), false); n != 1 {
		t.Fatalf("after Stop and Restart the stream holds %d messages, want 1", n)
	}
	p.Kill()
	p.Restart()
	if n := streamMsgs(t, p.URL(), true); n != 2 {
		t.Fatalf("after Kill and Restart the stream holds %d messages, want 2", n)
	}
}

func TestBuildHonoursCacheEnv(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("COREPIPE_CACHE", cache)
	bin, err := buildServer()
	if err != nil {
		t.Fatal(err)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	version, err := serverVersion(root)
	if err != nil || !strings.HasPrefix(version, "v2.") {
		t.Fatalf("nats-server version %q: %v", version, err)
	}
	if want := filepath.Join(cache, "nats-server-"+version, "nats-server"); bin != want {
		t.Fatalf("built %s, want %s", bin, want)
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("no executable at %s: %v", bin, err)
	}
}

// A three-server cluster keeps an R3 stream's messages when its leader is
// killed: another server leads it, and the killed one catches up.
func TestClusterLeaderKilled(t *testing.T) {
	c := StartCluster(t, 3)
	js := JetStream(t, c.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "r3", []byte("before")); err != nil {
		t.Fatal(err)
	}
	leader, err := c.StreamLeader("R3")
	if err != nil || leader == nil {
		t.Fatalf("leader: %v %v", leader, err)
	}
	leader.Kill()
	var next *Process
	for next == nil || next == leader {
		if ctx.Err() != nil {
			t.Fatal("no new leader within 30s")
		}
		time.Sleep(100 * time.Millisecond)
		next, _ = c.StreamLeader("R3")
	}
	if _, err := js.Publish(ctx, "r3", []byte("after")); err != nil {
		t.Fatal(err)
	}
	leader.Restart()
	s, err := js.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs != 2 {
		t.Fatalf("R3 holds %v messages (%v), want 2", info, err)
	}
}
