package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestCoresPerSignature is issue 16's proof on the real pipeline: `corepipe
// dev --cores-per-signature 2`, the kernel's handler installed, ten crashes
// of one bug. Every crash gets its full report (analysed on the node for the
// eight whose core stays there), two cores are stored, and another bug's
// first crash ships its core. Then a debugger requests one of the kept
// cores: the node uploads it, the report says stored and the core
// downloads.
func TestCoresPerSignature(t *testing.T) {
	holdCorePattern(t)
	dev, api := startDev(t, nil, "--cores-per-signature", "2", "--cores-window", coreWindow.String(), "--node-core-ttl", "1h", "--rate-limit", "50")
	bug := crashProgram{name: "nilderef"}.build(t)
	began := time.Now()
	pids := map[int]bool{}
	for range 10 {
		res := crashtest.Run(t, time.Minute, bug, nil)
		pids[res.PID] = true
	}
	other := crashtest.Run(t, time.Minute, crashProgram{name: "custompanic"}.build(t), nil)

	reports := map[int]*corepipe.Report{}
	deadline := time.Now().Add(3 * time.Minute)
	for len(reports) < 10 && time.Now().Before(deadline) {
		for _, r := range list(t, api) {
			if pids[r.Process.PID] && r.Status != corepipe.StatusPending {
				reports[r.Process.PID] = r
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(reports) != 10 {
		t.Fatalf("%d of the 10 crashes have a report", len(reports))
	}
	var stored, onNode []*corepipe.Report
	sig := ""
	for _, r := range reports {
		if r.Status != corepipe.StatusAnalyzed || r.Signature == "" || !strings.Contains(r.Title, "nil pointer dereference") {
			t.Errorf("crash %s: status %q, signature %q, title %q, error %q", r.ID, r.Status, r.Signature, r.Title, r.Error)
		}
		if sig != "" && r.Signature != sig {
			t.Errorf("crash %s has signature %s, the others %s", r.ID, r.Signature, sig)
		}
		sig = r.Signature
		switch l := r.Artifacts.Core.Location; {
		case r.Artifacts.Core.Key != "" && l != nil && l.State == corepipe.CoreStored:
			stored = append(stored, r)
		case r.Artifacts.Core.Key == "" && l != nil && l.State == corepipe.CoreOnNode && l.Until.After(time.Now()):
			onNode = append(onNode, r)
		default:
			t.Errorf("crash %s: core key %q, location %+v", r.ID, r.Artifacts.Core.Key, l)
		}
	}
	// Two cores a window: a run across the end of one may store two more.
	if w := quotaWindows(began, time.Now()); len(stored) < 2 || len(stored) > 2*w || len(stored)+len(onNode) != 10 || w == 1 && len(stored) != 2 {
		t.Fatalf("%d cores stored and %d kept on the node, want 2 and 8 (up to %d stored in the %d quota windows the crashes spanned)", len(stored), len(onNode), 2*w, w)
	}
	// The node's report is a full one: every goroutine, as the stored
	// cores' reports have them.
	var full corepipe.Report
	getJSON(t, api+"/api/v1/crashes/"+onNode[0].ID, &full)
	if len(full.Goroutines) == 0 || full.CrashingGoroutine == 0 {
		t.Errorf("the report of a core kept on the node has %d goroutines, crashing %d", len(full.Goroutines), full.CrashingGoroutine)
	}
	if code, body := get(t, api+"/api/v1/crashes/"+onNode[0].ID+"/core"); code != http.StatusNotFound || !strings.Contains(string(body), "core/request") {
		t.Errorf("GET the core kept on the node: %d %s", code, body)
	}
	r := waitReport(t, api, other.PID, 2*time.Minute)
	if r.Artifacts.Core.Key == "" || r.Signature == sig {
		t.Errorf("another bug's first crash: core key %q, signature %q", r.Artifacts.Core.Key, r.Signature)
	}

	// A debugger asks for a kept core.
	want := onNode[3]
	resp, err := http.Post(api+"/api/v1/crashes/"+want.ID+"/core/request", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var answer struct {
		Requested bool                  `json:"requested"`
		Location  corepipe.CoreLocation `json:"core_location"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &answer) != nil || !answer.Requested || answer.Location.State != corepipe.CoreOnNode {
		t.Fatalf("request core: %s %s", resp.Status, body)
	}
	requested := time.Now()
	got := waitReportWhere(t, api, 2*time.Minute, func(r *corepipe.Report) bool {
		return r.ID == want.ID && r.Artifacts.Core.Key != ""
	})
	t.Logf("requested core stored and analysed again in %v", time.Since(requested).Round(time.Millisecond))
	if got.Status != corepipe.StatusAnalyzed || got.Signature != sig || got.Artifacts.Core.Location == nil || got.Artifacts.Core.Location.State != corepipe.CoreStored {
		t.Errorf("after the request: status %q, signature %q, location %+v", got.Status, got.Signature, got.Artifacts.Core.Location)
	}
	code, core := get(t, api+"/api/v1/crashes/"+url.PathEscape(want.ID)+"/core")
	if code != http.StatusOK || !bytes.HasPrefix(core, []byte("\x7fELF")) {
		t.Errorf("GET the requested core: %d, %d bytes", code, len(core))
	}
	// corepipe fetch --wait requests another kept core and waits for it.
	dir := t.TempDir()
	out, err := exec.Command(filepath.Join(binDir, "corepipe"), "fetch", "--server", api, "--dir", dir, "--wait", "2m", onNode[5].ID).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "requested from node") {
		t.Fatalf("corepipe fetch --wait: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "core-"+onNode[5].ID)); err != nil || fi.Size() == 0 {
		t.Errorf("fetch --wait left no core: %v", err)
	}
	// One report per crash of this test; the machine's other crashes
	// (tests of other packages run at the same time) are not counted.
	ours := 0
	for _, r := range list(t, api) {
		if pids[r.Process.PID] || r.Process.PID == other.PID {
			ours++
		}
	}
	if ours != 11 {
		t.Errorf("%d reports of this test's crashes listed, want 11 (one per crash)", ours)
	}
	// What the node analyses cost, as the agent logged them.
	for _, m := range regexp.MustCompile(`core analysed on the node.*analysis_ms=(\d+)`).FindAllStringSubmatch(dev.out.String(), -1) {
		t.Logf("node analysis: %s ms", m[1])
	}
}

func list(t *testing.T, api string) []*corepipe.Report {
	t.Helper()
	var l struct {
		Crashes []*corepipe.Report `json:"crashes"`
	}
	getJSON(t, api+"/api/v1/crashes?limit=100", &l)
	return l.Crashes
}

// coreWindow is the --cores-window of the e2e tests.
const coreWindow = time.Hour

// quotaWindows is how many of coreWindow's windows the time from..to
// touches. The fleet's quota counts by the clock's window (the time since
// the epoch divided by the window, as the agents' CoreQuota keys it), so a
// run across the end of one may store the quota again in the next.
func quotaWindows(from, to time.Time) int {
	w := int64(coreWindow)
	return int(to.UnixNano()/w-from.UnixNano()/w) + 1
}
