package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corepipe/corepipe"
)

// versioned is a crash of signature sig from build version, age ago, in pod.
func versioned(sig, version, pod string, age time.Duration) *corepipe.Report {
	r := newReport(age)
	r.Signature = sig
	r.Title = "nil pointer dereference in main.(*server).retries"
	r.Go.MainVersion = version
	r.Container.Pod = pod
	return r
}

func TestGroupsAPI(t *testing.T) {
	e := newEnv(t)
	const sig, other = "gocrash/v1:0123456789abcdef", "gocrash/v1:ffff"
	// Crashes in v1.0.0 ten days ago, then quiet, then v1.1.0 today: a
	// regression. Another bug crashed yesterday.
	e.add(versioned(sig, "v1.0.0", "api-0", 10*24*time.Hour), true)
	e.add(versioned(sig, "v1.0.0", "api-1", 10*24*time.Hour-time.Hour), true)
	e.add(versioned(other, "v1.0.0", "worker-0", 24*time.Hour), true)
	latest := versioned(sig, "v1.1.0", "api-0", time.Minute)
	e.add(latest, true)

	_, body := e.getOK("/api/v1/groups")
	var list struct {
		Groups     []corepipe.Group `json:"groups"`
		NextCursor *string          `json:"next_cursor"`
	}
	if err := json.Unmarshal(body, &list); err != nil || list.NextCursor == nil {
		t.Fatalf("%s: %v", body, err)
	}
	if len(list.Groups) != 2 || list.Groups[0].Signature != sig || list.Groups[1].Signature != other {
		t.Fatalf("groups not most recent first: %s", body)
	}
	g := list.Groups[0]
	if g.Count != 3 || g.FirstVersion != "v1.0.0" || g.LastVersion != "v1.1.0" || g.Status != corepipe.GroupRegressed ||
		!g.LastSeen.Equal(latest.CapturedAt) || len(g.Workloads) != 2 {
		t.Errorf("group %+v", g)
	}

	for _, path := range []string{"/api/v1/groups/" + sig, "/api/v1/groups/" + url.PathEscape(sig)} {
		_, body := e.getOK(path)
		var d struct {
			Group     corepipe.Group    `json:"group"`
			Versions  []corepipe.Share  `json:"versions"`
			Workloads []corepipe.Share  `json:"workloads"`
			Crashes   []corepipe.Report `json:"crashes"`
		}
		if err := json.Unmarshal(body, &d); err != nil {
			t.Fatal(err)
		}
		if d.Group.Signature != sig || len(d.Crashes) != 3 || d.Crashes[0].ID != latest.ID {
			t.Errorf("%s: group %s with %d crashes", path, d.Group.Signature, len(d.Crashes))
		}
		var versions []string
		for _, v := range d.Versions {
			versions = append(versions, v.Value)
		}
		if !slices.Equal(versions, []string{"v1.1.0", "v1.0.0"}) || d.Versions[1].Count != 2 {
			t.Errorf("%s: versions %+v", path, d.Versions)
		}
		if len(d.Workloads) != 2 || d.Workloads[0].Value != "prod/api-0" || d.Workloads[0].Count != 2 {
			t.Errorf("%s: workloads %+v", path, d.Workloads)
		}
	}

	ids, _ := e.list("signature=" + url.QueryEscape(other))
	if len(ids) != 1 {
		t.Errorf("crashes of %s: %v", other, ids)
	}
	_, body = e.getOK("/api/v1/groups?status=regressed")
	if !strings.Contains(string(body), sig) || strings.Contains(string(body), other) {
		t.Errorf("status filter: %s", body)
	}
	_, body = e.getOK("/api/v1/groups?since=2h")
	if !strings.Contains(string(body), sig) || strings.Contains(string(body), other) {
		t.Errorf("since filter: %s", body)
	}
	_, body = e.getOK("/api/v1/groups?limit=1")
	if err := json.Unmarshal(body, &list); err != nil || len(list.Groups) != 1 || *list.NextCursor == "" {
		t.Fatalf("limit=1: %s", body)
	}
	_, body = e.getOK("/api/v1/groups?limit=1&cursor=" + url.QueryEscape(*list.NextCursor))
	if !strings.Contains(string(body), other) {
		t.Errorf("second page: %s", body)
	}
}

func TestGroupsBadInput(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		path   string
		status int
		says   string
	}{
		{"/api/v1/groups/gocrash/v1:unknown", http.StatusNotFound, "not found"},
		{"/api/v1/groups/has%20space", http.StatusBadRequest, "signature"},
		{"/api/v1/groups/" + strings.Repeat("a", 300), http.StatusBadRequest, "signature"},
		{"/api/v1/groups/ctl%00", http.StatusBadRequest, "signature"},
		{"/api/v1/groups?status=exploded", http.StatusBadRequest, "status"},
		{"/api/v1/groups?since=later", http.StatusBadRequest, "since"},
		{"/api/v1/groups?limit=-1", http.StatusBadRequest, "limit"},
		{"/api/v1/groups?cursor=zzz", http.StatusBadRequest, "cursor"},
	} {
		resp, body := e.get(tc.path)
		wantError(t, resp, body, tc.status, tc.says)
	}
	resp, _ := e.get("/groups/gocrash/v1:unknown")
	if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("unknown group page: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
}

func TestUIGroups(t *testing.T) {
	e := newEnv(t)
	const sig = "gocrash/v1:0123456789abcdef"
	for i := range 5 {
		e.add(versioned(sig, "v1.0.0", "api-0", time.Duration(5-i)*30*time.Hour), true)
	}
	e.add(versioned(sig, "v2.0.0", "api-1", time.Minute), true)

	_, page := e.getOK("/groups")
	body := string(page)
	for _, want := range []string{`href="/groups/` + sig + `"`, "v1.0.0 → v2.0.0", ">6<"} {
		if !strings.Contains(body, want) {
			t.Errorf("groups page lacks %q", want)
		}
	}
	_, page = e.getOK("/groups/" + sig)
	body = string(page)
	for _, want := range []string{"<svg", "Crashes per day", "prod/api-1", "v2.0.0", "/?signature=" + url.QueryEscape(sig)} {
		if !strings.Contains(body, want) {
			t.Errorf("group page lacks %q", want)
		}
	}
	// Six crashes over five days: one bar per day with crashes.
	if n := strings.Count(body, "<rect") - strings.Count(body, `height="0"`); n != 6 && n != 5 {
		t.Errorf("%d non-empty bars for 6 crashes over 5 days", n)
	}
}

func TestChart(t *testing.T) {
	t0 := time.Date(2026, 5, 4, 10, 30, 0, 0, time.UTC)
	from, step, n := chartRange(t0, t0.Add(3*time.Hour))
	if step != time.Hour || n != chartMinBars || !from.Equal(time.Date(2026, 5, 4, 13-chartMinBars+1, 0, 0, 0, time.UTC)) {
		t.Errorf("3 hours: from %v step %v n %d", from, step, n)
	}
	from, step, n = chartRange(t0, t0.Add(20*24*time.Hour))
	if step != 24*time.Hour || n != 21 || !from.Equal(time.Date(2026, 5, 4, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("20 days: from %v step %v n %d", from, step, n)
	}
	if _, _, n = chartRange(t0, t0.Add(400*24*time.Hour)); n != chartMaxBars {
		t.Errorf("400 days: %d bars", n)
	}

	c := newChart(from, 24*time.Hour, []int64{0, 1000, 1, 500})
	if len(c.Bars) != 4 || c.Max != 1000 || c.Step != "day" {
		t.Fatalf("chart %+v", c)
	}
	if b := c.Bars; b[0].H != 0 || b[1].H != chartHeight-2 || b[2].H < 2 || b[3].H != (chartHeight-2)/2 || b[1].Y+b[1].H != chartHeight {
		t.Errorf("bars %+v", b)
	}
	if c.Bars[1].Label != "2026-05-05: 1000" {
		t.Errorf("label %q", c.Bars[1].Label)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnvWith(t, func(c *Config) {
		c.Registerer, c.Gatherer = reg, reg
		c.Pending = func(context.Context) (uint64, error) { return 7, nil }
		c.Tokens = testTokens(t)
	})
	r := newReport(time.Minute)
	e.add(r, true)
	viewer := http.Header{"Authorization": {"Bearer " + viewerToken}}
	e.do("GET", "/api/v1/crashes", viewer, nil)
	e.do("GET", "/api/v1/crashes/"+r.ID, viewer, nil)
	e.do("GET", "/api/v1/crashes/"+corepipe.NewID(now), viewer, nil)
	e.do("GET", "/api/v1/crashes", nil, nil)

	if resp, _ := e.do("GET", "/metrics", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("metrics without a token: %s", resp.Status)
	}
	resp, body := e.do("GET", "/metrics", viewer, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %s", resp.Status)
	}
	for _, want := range []string{
		`corepipe_api_requests_total{code="200",route="GET /api/v1/crashes"} 1`,
		`corepipe_api_requests_total{code="401",route="GET /api/v1/crashes"} 1`,
		`corepipe_api_requests_total{code="200",route="GET /api/v1/crashes/{id}"} 1`,
		`corepipe_api_requests_total{code="404",route="GET /api/v1/crashes/{id}"} 1`,
		`corepipe_api_request_duration_seconds_count{code="200",route="GET /api/v1/crashes"} 1`,
		"corepipe_index_crashes 1",
		"corepipe_index_groups 1",
		"corepipe_index_pending_reports 7",
		"corepipe_index_ready 1",
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	// A second server on the same registry is a wiring mistake, said at once.
	if _, err := New(Config{Index: e.index, Blobs: e.blobs, Registerer: reg}); err == nil {
		t.Error("registering the metrics twice did not fail")
	}
}

func TestUICrashGoroutineGroupsAndDebugLine(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	r.GoroutineGroups = []corepipe.GoroutineGroup{{
		Count: 3, Status: "waiting", WaitReason: "select", CreatedBy: "main.startWorkers",
		TopFrames:    []corepipe.Frame{{Function: "main.worker", File: "/src/server/worker.go", Line: 12}},
		GoroutineIDs: []int64{21, 22, 23},
	}}
	r.Diagnosis = []corepipe.Diagnosis{{Code: "nil-deref", Severity: "error", Message: "nil pointer dereference", Evidence: "address 0x0"}}
	e.add(r, true)
	_, page := e.getOK("/crashes/" + r.ID)
	body := string(page)
	for _, want := range []string{
		"Goroutines by identical stack", "3 ×", "main.worker", "/src/server/worker.go:12", "goroutines 21, 22, 23",
		"nil-deref", "address 0x0",
		"corepipe debug --server " + e.url + " " + r.ID,
		`href="/groups/` + r.Signature + `"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("crash page lacks %q", want)
		}
	}
	crashing := strings.Index(body, "Crashing goroutine")
	if grouped := strings.Index(body, "Goroutines by identical stack"); crashing < 0 || grouped < crashing {
		t.Error("the crashing goroutine must come before the grouped ones")
	}

	req := httptest.NewRequest("GET", "/crashes/"+r.ID, nil)
	req.Host = "127.0.0.1:8080"
	if got := (&Server{}).debugCommand(req, r.ID); got != "corepipe debug "+r.ID {
		t.Errorf("debug line on the default server: %q", got)
	}
	behind := &Server{publicURL: &url.URL{Scheme: "https", Host: "crashes.example.com"}}
	if got := behind.debugCommand(req, r.ID); got != "corepipe debug --server https://crashes.example.com "+r.ID {
		t.Errorf("debug line behind a proxy: %q", got)
	}
}
