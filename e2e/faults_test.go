package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/miniotest"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// bigCrasher fills 192 MiB with random bytes before it crashes: its core
// compresses to about as much, long enough to upload that a server can be
// stopped in the middle of it.
const bigCrasher = `package main

import "math/rand/v2"

var keep []byte

func main() {
	keep = make([]byte, 192<<20)
	rand.NewChaCha8([32]byte{1}).Read(keep)
	var p *struct{ x int }
	println(p.x, keep[0])
}
`

const smallCrasher = `package main

func main() {
	var p *struct{ x int }
	println(p.x)
}
`

// TestFaults runs the agent as its own process against a real MinIO and a
// real nats-server, stops each of them while a big core is being shipped,
// crashes more programs while it is down, restarts it, and checks that
// every crash reaches the queue exactly once with its core stored. Then it
// checks the agent's hold on core_pattern: put back when overwritten,
// kept after SIGKILL, restored by the next agent's clean stop.
func TestFaults(t *testing.T) {
	holdCorePattern(t)
	prev, err := corepattern.Kernel{}.Read()
	if err != nil {
		t.Fatal(err)
	}
	minio := miniotest.Start(t)
	ns := natstest.StartExternal(t)
	big := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": bigCrasher}})
	small := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": smallCrasher}})
	dir := crashtest.PatternDir(t, "cpf")
	spoolDir := filepath.Join(dir, "spool")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	agentArgs := []string{"agent", "--spool", spoolDir, "--blob", minio.URL("corepipe-faults"), "--nats", ns.URL(),
		"--install-handler", "--collector", filepath.Join(binDir, "corepipe-collector"),
		"--install-collector-to", filepath.Join(dir, "hostbin"),
		"--max-backoff", "2s", "--handler-check", "100ms", "--metrics-listen", metricsAddr, "--rate-limit", "0"}
	ag := start(t, minio.Env(), agentArgs...)
	waitHandler(t)
	if s, _ := (corepattern.Kernel{}).Read(); !strings.HasPrefix(s.Pattern, "|"+filepath.Join(dir, "hostbin", corepattern.Marker)+" ") {
		t.Fatalf("core_pattern %q does not run the collector copied to the host directory", s.Pattern)
	}

	var pids []int
	crash := func(exe string) {
		t.Helper()
		res := crashtest.Run(t, time.Minute, exe, nil)
		if res.Signal != syscall.SIGABRT {
			t.Fatalf("crasher: %s", res.Describe())
		}
		pids = append(pids, res.PID)
	}
	// midUpload crashes the big program and returns once the agent has had
	// its entry for a moment: shipping it takes seconds, so the caller
	// stops a server in the middle of that.
	midUpload := func() {
		t.Helper()
		crash(big)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if entries, _ := (spool.Spool{Dir: spoolDir}).Entries(); len(entries) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the big crash was not committed to the spool within 30s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
	}

	// Each server goes down while the big crash ships and two small ones
	// come in; once it is back, every crash is queued.
	for _, tc := range []struct {
		name      string
		srv       restartable
		whileDown func(t *testing.T)
	}{
		{"minio", minio, func(t *testing.T) {
			if n := len(spoolEntries(t, spoolDir)); n != 3 {
				t.Errorf("%d spool entries while MinIO is down, want the 3 crashes", n)
			}
		}},
		{"nats", ns, func(*testing.T) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			midUpload()
			tc.srv.Stop()
			crash(small)
			crash(small)
			time.Sleep(2 * time.Second)
			tc.whileDown(t)
			tc.srv.Restart()
			waitQueued(t, ns.URL(), pids)
		})
	}
	if t.Failed() {
		return
	}
	crashes := waitQueued(t, ns.URL(), pids)
	for _, kv := range minio.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	store, err := blob.Open(context.Background(), minio.URL("corepipe-faults"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crashes {
		if c.Core.Key == "" {
			t.Errorf("crash %s queued without a core key", c.ID)
			continue
		}
		if n, err := store.Stat(context.Background(), c.Core.Key); err != nil || n != c.Core.StoredSize {
			t.Errorf("core of crash %s: %d bytes stored, %v; manifest says %d", c.ID, n, err, c.Core.StoredSize)
		}
	}
	m := scrape(t, metricsAddr)
	// The clients retry too (minio-go resumes a request, nats.go buffers
	// through a reconnect): whether the agent itself saw a failure depends
	// on how the outage fell, so its retries are reported, not required.
	t.Logf("agent: %v uploaded, %v retries, %v bytes; the big cores' uploads took %v ms",
		m["corepipe_agent_crashes_uploaded_total"], m["corepipe_agent_retries_total"], m["corepipe_agent_uploaded_bytes_total"], bigUploads(crashes))
	if m["corepipe_agent_crashes_uploaded_total"] != float64(len(pids)) || m["corepipe_agent_spool_entries"] != 0 || m["corepipe_agent_oldest_waiting_seconds"] != 0 {
		t.Errorf("metrics %v; want %d uploaded and none waiting", m, len(pids))
	}

	t.Run("core_pattern", func(t *testing.T) {
		var k corepattern.Kernel
		installed, err := k.Read()
		if err != nil {
			t.Fatal(err)
		}
		// Overwritten, as by a sysctl run: put back.
		if err := k.Write(prev); err != nil {
			t.Fatal(err)
		}
		waitHandler(t)
		if s, _ := k.Read(); s != installed {
			t.Errorf("re-installed %+v, want %+v", s, installed)
		}
		if n := scrape(t, metricsAddr)["corepipe_agent_handler_reinstalls_total"]; n != 1 {
			t.Errorf("handler reinstalls = %v, want 1", n)
		}

		// SIGKILL: nothing restores the pattern, and the next agent keeps
		// the original to restore.
		ag.cmd.Process.Kill()
		<-ag.done
		if s, _ := k.Read(); s != installed {
			t.Fatalf("core_pattern after SIGKILL = %+v, want the handler still installed", s)
		}
		next := start(t, minio.Env(), agentArgs...)
		waitServing(t, next, metricsAddr)
		next.stop(t)
		if s, _ := k.Read(); s != prev {
			t.Errorf("core_pattern after the next agent's SIGTERM = %+v, want the original %+v", s, prev)
		}
	})
}

func spoolEntries(t *testing.T, spoolDir string) []spool.Entry {
	t.Helper()
	entries, err := spool.Spool{Dir: spoolDir}.Entries()
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// waitQueued waits until the crashes stream holds one message for each of
// pids, and fails on a duplicate or a stranger. It reads the stream by
// sequence, without consuming it.
func waitQueued(t *testing.T, url string, pids []int) []*corepipe.Crash {
	t.Helper()
	js := natstest.JetStream(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		crashes, err := queued(ctx, js)
		if err == nil && len(crashes) >= len(pids) {
			byPID := map[int]int{}
			for _, c := range crashes {
				byPID[c.Process.PID]++
			}
			for _, pid := range pids {
				if byPID[pid] != 1 {
					t.Errorf("crash of pid %d queued %d times, want once", pid, byPID[pid])
				}
			}
			if len(crashes) != len(pids) {
				t.Errorf("%d messages queued for %d crashes", len(crashes), len(pids))
			}
			return crashes
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d crashes queued after 90s (last error %v)", len(crashes), len(pids), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func queued(ctx context.Context, js jetstream.JetStream) ([]*corepipe.Crash, error) {
	s, err := js.Stream(ctx, natsq.CoresStream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var crashes []*corepipe.Crash
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return nil, err
		}
		var c corepipe.Crash
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return nil, err
		}
		crashes = append(crashes, &c)
	}
	return crashes, nil
}

// restartable is a server a test takes down and brings back.
type restartable interface {
	Stop()
	Restart()
}

// scrape reads an agent's metrics: each sample's value by its series, the
// name with its labels (corepipe_agent_retries_total,
// corepipe_agent_core_decisions_total{decision="kept"}).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// waitServing waits until the agent p serves its metrics: by then it has
// installed its signal handler, and SIGTERM stops it cleanly.
func waitServing(t *testing.T, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("agent exited:\n%s", tail(p.out.String(), 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("agent not serving metrics within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bigUploads lists the upload times of the cores over 100 MiB.
func bigUploads(crashes []*corepipe.Crash) []int64 {
	var ms []int64
	for _, c := range crashes {
		if c.Core.Size > 100<<20 {
			ms = append(ms, c.Timings.UploadMS)
		}
	}
	return ms
}
