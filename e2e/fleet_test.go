package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/miniotest"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	"github.com/corepipe/corepipe/internal/testkit/netns"
	"github.com/corepipe/corepipe/internal/tick"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// fleetBugs is one program with three bugs, chosen by its argument: three
// signatures among all the fleet's crashes.
const fleetBugs = `package main

import (
	"os"
	"time"
)

type conn struct{ buf []byte }

//go:noinline
func (c *conn) flush() int { return len(c.buf) }

//go:noinline
func lookup(xs []int, i int) int { return xs[i] }

func main() {
	go func() { time.Sleep(time.Hour) }()
	switch os.Args[1] {
	case "nil":
		var c *conn
		println(c.flush())
	case "index":
		println(lookup([]int{1, 2, 3}, len(os.Args)+5))
	default:
		panic("fleet: " + os.Args[1])
	}
}
`

// fleetDispatch is the kernel's handler for the fleet: one real collector
// per crash, into the spool of the node the crashing PID picks, so the
// one kernel here feeds every agent as each node's own kernel would.
const fleetDispatch = `#!/bin/sh
n=$(( $1 %% %d ))
exec %s -spool %s/node$n/spool "$@"
`

// TestFleet is issue 16's proof on real distributed servers: a three-node
// JetStream cluster with R3 streams, a distributed MinIO of four processes
// behind a balancer, six agents (each its own node and spool, with the
// fleet's core quota), three analyzers and two API replicas with their own
// SQLite. Real crashes of three bugs go through the kernel and the real
// collector while, in turn, the stream's NATS leader, a MinIO server, an
// analyzer (mid-analysis) and an API replica are killed and come back.
//
// It must hold that every crash gets one report, both replicas agree, the
// cores stored are the quota's per bug, not one per crash, and every spool
// ends empty but for the cores kept on their node.
//
// COREPIPE_FLEET_CRASHES (default 100) and COREPIPE_FLEET_OUTAGE (default
// 15s; scripts/bench-fleet.sh --long: 1000 and 10m) size it.
func TestFleet(t *testing.T) {
	// MinIO's distributed mode takes no loopback address in a container:
	// the test runs in a network namespace of its own, whose loopback
	// carries four more addresses, one per MinIO server.
	hosts := []string{"10.250.0.1", "10.250.0.2", "10.250.0.3", "10.250.0.4"}
	if !netns.Enter(t, hosts) {
		return
	}
	holdCorePattern(t)
	prev, err := corepattern.Kernel{}.Read()
	if err != nil {
		t.Fatal(err)
	}
	crashes := envInt(t, "COREPIPE_FLEET_CRASHES", 100)
	outage := 15 * time.Second
	if v := os.Getenv("COREPIPE_FLEET_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("COREPIPE_FLEET_OUTAGE: %v", err)
		}
		outage = d
	}
	const nodes, perSignature = 6, 2

	ns := natstest.StartCluster(t, 3)
	set := miniotest.StartErasureSet(t, hosts)
	front := miniotest.NewFront(t, set)
	env := set[0].Env()
	blob := front.URL("corepipe-fleet")
	dir := crashtest.PatternDir(t, "cpfleet")
	queue := []string{"--blob", blob, "--nats", ns.URL(), "--nats-replicas", "3"}

	var metrics []string
	for i := range nodes {
		spoolDir := filepath.Join(dir, fmt.Sprintf("node%d", i), "spool")
		metrics = append(metrics, fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)))
		start(t, env, append([]string{"agent", "--spool", spoolDir, "--node-name", fmt.Sprintf("node-%d", i),
			"--rate-limit", "0", "--max-backoff", "2s", "--cores-per-signature", strconv.Itoa(perSignature), "--cores-window", coreWindow.String(),
			"--node-core-ttl", "1h", "--metrics-listen", metrics[i]}, queue...)...)
	}
	var analyzers []*proc
	startAnalyzer := func() *proc {
		return start(t, env, append([]string{"analyzer", "--workers", "1"}, queue...)...)
	}
	for range 3 {
		analyzers = append(analyzers, startAnalyzer())
	}
	apiAddrs := []string{fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))}
	startAPI := func(i int) *proc {
		// Each replica follows the reports stream under its own durable
		// name into its own SQLite.
		return start(t, env, append([]string{"api", "--listen", apiAddrs[i], "--durable", fmt.Sprintf("api-%d", i+1),
			"--db", filepath.Join(dir, fmt.Sprintf("index%d.db", i))}, queue...)...)
	}
	apis := []*proc{startAPI(0), startAPI(1)}
	urls := []string{apis[0].waitURL(t), apis[1].waitURL(t)}

	handler := filepath.Join(dir, "dispatch")
	script := fmt.Sprintf(fleetDispatch, nodes, filepath.Join(binDir, "corepipe-collector"), dir)
	if err := os.WriteFile(handler, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		// The agents write their spool settings; wait for all six.
		waitFile(t, filepath.Join(dir, fmt.Sprintf("node%d", i), "spool"))
	}
	if err := (corepattern.Kernel{}).Write(corepattern.Settings{Pattern: "|" + handler + " %P %i %I %s %t %c %u %g %d %p %F", PipeLimit: 16}); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := (corepattern.Kernel{}).Write(prev); err != nil {
				t.Errorf("restore core_pattern: %v", err)
			}
		}
	}
	t.Cleanup(restore)
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": fleetBugs}})
	bugs := []string{"nil", "index", "panic"}

	// The crashes, four at a time, in six batches: the fleet healthy,
	// then each of the four faults in turn lasting while a batch crashes,
	// then healthy again.
	began := time.Now()
	var (
		mu      sync.Mutex
		crashed = map[int]time.Time{}
		total   atomic.Int64
	)
	crashBatch := func(n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					i := total.Add(1)
					res := crashtest.Run(t, time.Minute, exe, []string{"GOTRACEBACK=crash"}, bugs[i%int64(len(bugs))])
					if res.Signal != syscall.SIGABRT {
						t.Errorf("crash %d: %s", i, res.Describe())
						continue
					}
					mu.Lock()
					crashed[res.PID] = time.Now()
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	// When each report first showed on replica 1, for crash-to-report.
	seen := &firstSeen{at_: map[int]time.Time{}}
	pollCtx, stopPoll := context.WithCancel(context.Background())
	var pollWG sync.WaitGroup
	pollWG.Go(func() { seen.poll(pollCtx, urls[0]) })
	defer func() {
		stopPoll()
		pollWG.Wait()
	}()
	batch := crashes / 6
	// during runs a batch of crashes with fault in force for the outage
	// (from two seconds into the batch, so that crashes are on their way
	// through every part), then repair, and waits for the batch.
	during := func(name string, fault, repair func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			crashBatch(batch)
		}()
		time.Sleep(2 * time.Second)
		t.Logf("fault: %s, at crash %d, for %v", name, total.Load(), outage)
		fault()
		time.Sleep(outage)
		repair()
		<-done
	}

	crashBatch(batch)
	var leader *natstest.Process
	during("kill the NATS leader of "+natsq.CoresStream, func() {
		var err error
		if leader, err = ns.StreamLeader(natsq.CoresStream); err != nil || leader == nil {
			t.Fatalf("the crash stream's leader: %v %v", leader, err)
		}
		leader.Kill()
	}, func() { leader.Restart() })
	during("kill MinIO server 3", set[2].Stop, set[2].Restart)
	during("kill an analyzer mid-analysis", func() {
		analyzers[1].cmd.Process.Kill()
		<-analyzers[1].done
	}, func() { analyzers[1] = startAnalyzer() })
	during("kill API replica 2", func() {
		apis[1].cmd.Process.Kill()
		<-apis[1].done
	}, func() {
		apis[1] = startAPI(1)
		urls[1] = apis[1].waitURL(t)
	})
	crashBatch(crashes - 5*batch)
	restore()
	if t.Failed() {
		return
	}
	// Every crash has its report on both replicas.
	var reports [2]map[int]*corepipe.Report
	deadline := time.Now().Add(5 * time.Minute)
	for i, api := range urls {
		for {
			reports[i] = byPID(t, listAll(t, api), crashed)
			if len(reports[i]) == len(crashed) || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if len(reports[i]) != len(crashed) {
			t.Fatalf("replica %d has reports of %d of the %d crashes", i+1, len(reports[i]), len(crashed))
		}
	}
	elapsed := time.Since(began)
	var latencies []time.Duration
	sigs := map[string]int{}
	storedCores := map[string]int{}
	for pid, r := range reports[0] {
		o := reports[1][pid]
		if o == nil || o.ID != r.ID || o.Status != r.Status || o.Signature != r.Signature {
			t.Errorf("pid %d: replica 1 has %s %s %s, replica 2 %+v", pid, r.ID, r.Status, r.Signature, o)
			continue
		}
		if r.Status != corepipe.StatusAnalyzed || r.Signature == "" {
			t.Errorf("crash %s: %s %q %s", r.ID, r.Status, r.Signature, r.Error)
			continue
		}
		sigs[r.Signature]++
		if r.Artifacts.Core.Key != "" {
			storedCores[r.Signature]++
		}
		if at, ok := seen.at(pid); ok {
			latencies = append(latencies, at.Sub(crashed[pid]))
		}
	}
	if len(sigs) != len(bugs) {
		t.Errorf("%d signatures among the crashes, want %d: %v", len(sigs), len(bugs), sigs)
	}
	// The agents' decisions: a core is shipped when admitted, or when the
	// quota could not be asked (NATS leaderless: the documented
	// degradation costs bytes, never a crash).
	decided := map[string]float64{}
	for _, addr := range metrics {
		for k, v := range decisions(t, addr) {
			decided[k] += v
		}
	}
	degraded := int(decided["quota_unavailable"] + decided["analysis_failed"])
	stored := 0
	windows := quotaWindows(began, time.Now())
	for sig, n := range storedCores {
		stored += n
		if n > perSignature*windows+degraded {
			t.Errorf("%d cores stored for %s, the quota is %d in each of the %d windows the run spanned and %d were shipped without asking it", n, sig, perSignature, windows, degraded)
		}
	}
	if shipped := int(decided["shipped"]) + degraded; stored != shipped || int(decided["kept"]) != len(crashed)-stored {
		t.Errorf("%d cores stored of %d crashes; the agents decided %v", stored, len(crashed), decided)
	}
	// Every spool is empty but for the cores kept on their node. An agent
	// moves a kept core's entry aside just after publishing its crash, so
	// the last may still be on its way there.
	kept := 0
	for i := range nodes {
		s := spool.Spool{Dir: filepath.Join(dir, fmt.Sprintf("node%d", i), "spool")}
		entries := spoolEntries(t, s.Dir)
		for deadline := time.Now().Add(30 * time.Second); len(entries) > 0 && time.Now().Before(deadline); entries = spoolEntries(t, s.Dir) {
			time.Sleep(100 * time.Millisecond)
		}
		for _, e := range entries {
			t.Errorf("node %d: spool entry %s not shipped", i, e.ID)
		}
		k, err := s.Kept()
		if err != nil {
			t.Fatal(err)
		}
		kept += len(k)
	}
	storedBytes, baseline := bucketBytes(t, set[0], front.Endpoint(), "corepipe-fleet"), 0.0
	for _, r := range reports[0] {
		baseline += float64(r.Artifacts.Core.StoredSize)
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	t.Logf("fleet: %d crashes on %d nodes in %v (%.0f a minute), %d bugs, crash to report p50 %v p99 %v; cores stored %d of %d (agents decided %v), kept on nodes %d; "+
		"core bytes stored %.1f MiB against %.1f MiB shipping every core (%.1f%%)",
		len(crashed), nodes, elapsed.Round(time.Second), float64(len(crashed))/elapsed.Minutes(), len(sigs),
		quantile(latencies, 0.5), quantile(latencies, 0.99), stored, len(crashed), decided, kept,
		float64(storedBytes)/(1<<20), baseline/(1<<20), 100*float64(storedBytes)/max(baseline, 1))
}

// decisions scrapes an agent's core-policy decisions by kind.
func decisions(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for series, v := range scrape(t, addr) {
		if rest, ok := strings.CutPrefix(series, `corepipe_agent_core_decisions_total{decision="`); ok {
			if kind, ok := strings.CutSuffix(rest, `"}`); ok {
				out[kind] = v
			}
		}
	}
	return out
}

// byPID keeps the reports of the crashes in crashed, by PID; a PID with two
// reports fails the test.
func byPID(t *testing.T, rs []*corepipe.Report, crashed map[int]time.Time) map[int]*corepipe.Report {
	t.Helper()
	out := map[int]*corepipe.Report{}
	for _, r := range rs {
		if _, ok := crashed[r.Process.PID]; ok && r.Status != corepipe.StatusPending {
			if prev, dup := out[r.Process.PID]; dup && prev.ID != r.ID {
				// PIDs wrap only after far more crashes than these.
				t.Fatalf("two reports for pid %d: %s and %s", r.Process.PID, prev.ID, r.ID)
			}
			out[r.Process.PID] = r
		}
	}
	return out
}

// listAll is every crash the API lists, page after page.
func listAll(t *testing.T, api string) []*corepipe.Report {
	t.Helper()
	var all []*corepipe.Report
	cursor := ""
	for {
		var page struct {
			Crashes    []*corepipe.Report `json:"crashes"`
			NextCursor string             `json:"next_cursor"`
		}
		getJSON(t, api+"/api/v1/crashes?limit=500&cursor="+url.QueryEscape(cursor), &page)
		all = append(all, page.Crashes...)
		if page.NextCursor == "" {
			return all
		}
		cursor = page.NextCursor
	}
}

// bucketBytes is the size of the cores in bucket.
func bucketBytes(t *testing.T, s *miniotest.Server, endpoint, bucket string) int64 {
	t.Helper()
	ak, sk := s.Credentials()
	c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(ak, sk, "")})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if strings.HasSuffix(o.Key, "/core.zst") {
			n += o.Size
		}
	}
	return n
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(q*float64(len(ds))))].Round(time.Millisecond)
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// waitFile waits for the agent to create its spool directory.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not created within 30s", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// firstSeen records when each crash's report was first listed.
type firstSeen struct {
	mu  sync.Mutex
	at_ map[int]time.Time
}

func (f *firstSeen) at(pid int) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.at_[pid]
	return t, ok
}

// poll lists the API's crashes every second until ctx ends. It reads with
// a client of its own: the test's helpers fail the test, which a
// goroutine must not.
func (f *firstSeen) poll(ctx context.Context, api string) {
	tick.Every(ctx, time.Second, func() { f.list(ctx, api) })
}

// list notes when the API first listed each crash with its report.
func (f *firstSeen) list(ctx context.Context, api string) {
	var page struct {
		Crashes []*corepipe.Report `json:"crashes"`
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", api+"/api/v1/crashes?limit=200", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil {
		return
	}
	now := time.Now()
	f.mu.Lock()
	for _, r := range page.Crashes {
		if _, ok := f.at_[r.Process.PID]; !ok && r.Status != corepipe.StatusPending {
			f.at_[r.Process.PID] = now
		}
	}
	f.mu.Unlock()
}
