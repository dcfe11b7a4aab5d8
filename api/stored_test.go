package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

// leakReport is newReport with n more goroutines parked on a few stacks,
// as a goroutine leak leaves them.
func leakReport(n int) *corepipe.Report {
	r := newReport(time.Minute)
	for i := range n {
		g := corepipe.Goroutine{ID: int64(100 + i), Status: "waiting", WaitReason: "chan receive", WaitMinutes: int64(i % 4), CreatedBy: "main.startWorkers"}
		for d := range 12 + i%3 {
			g.Frames = append(g.Frames, corepipe.Frame{Function: fmt.Sprintf("main.worker%d.step%d", i%9, d), File: "/src/server/worker.go", Line: 10 + d, PC: fmt.Sprintf("%#x", 0x4a0000+16*d)})
		}
		r.Goroutines = append(r.Goroutines, g)
	}
	return r
}

// putStored stores r in the stored form, or with plain as json.Marshal's
// JSON (as reports were stored before it), and indexes it.
func (e *env) putStored(r *corepipe.Report, plain bool) {
	e.t.Helper()
	var b bytes.Buffer
	if plain {
		json.NewEncoder(&b).Encode(r)
	} else if err := r.WriteStored(&b); err != nil {
		e.t.Fatal(err)
	}
	e.put(corepipe.ReportKey(r.ID), b.Bytes())
	if err := e.index.Upsert(e.t.Context(), r); err != nil {
		e.t.Fatal(err)
	}
}

// sameReportJSON fails unless got decodes to what json.Marshal of want
// does.
func sameReportJSON(t *testing.T, got []byte, want any) {
	t.Helper()
	wb, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("served JSON is invalid: %v: %.300s", err, got)
	}
	json.Unmarshal(wb, &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("served JSON differs from json.Marshal's:\n got %.500s\nwant %.500s", got, wb)
	}
}

// TestGetCrashOfStoredForm: the detail clients get of a report stored with
// its identical stacks once is the report's documented JSON, frames in
// every goroutine; so is that of a report stored as plain JSON.
func TestGetCrashOfStoredForm(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t) })
	stored, plain := leakReport(3000), leakReport(50)
	plain.ID = corepipe.NewID(now.Add(-time.Hour))
	e.putStored(stored, false)
	e.putStored(plain, true)
	as := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	for _, r := range []*corepipe.Report{stored, plain} {
		resp, body := e.do("GET", "/api/v1/crashes/"+r.ID, as(debuggerToken), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", resp.Status, body)
		}
		sameReportJSON(t, body, r)
		// A viewer's copy is the same with the command line scrubbed.
		r.Process.Cmdline = []string{"/srv", "--password=hunter2"}
	}
	e.putStored(stored, false)
	_, body := e.do("GET", "/api/v1/crashes/"+stored.ID, as(viewerToken), nil)
	sameReportJSON(t, body, stored.Redacted())
	if bytes.Contains(body, []byte("hunter2")) {
		t.Error("a viewer sees the password")
	}
}

// TestGoroutinePages: the pages of a report's goroutines are its
// goroutines, in order, each whole.
func TestGoroutinePages(t *testing.T) {
	e := newEnv(t)
	r := leakReport(95)
	e.putStored(r, false)
	var all []corepipe.Goroutine
	offset, pages := 0, 0
	for {
		_, body := e.getOK(fmt.Sprintf("/api/v1/crashes/%s/goroutines?offset=%d&limit=10", r.ID, offset))
		var p goroutinePage
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Total != len(r.Goroutines) || p.Offset != offset || len(p.Goroutines) > 10 {
			t.Fatalf("page at %d: total %d, offset %d, %d goroutines", offset, p.Total, p.Offset, len(p.Goroutines))
		}
		all = append(all, p.Goroutines...)
		pages++
		if p.NextOffset == 0 {
			break
		}
		offset = p.NextOffset
	}
	if pages != 10 {
		t.Errorf("%d pages of 10 for %d goroutines", pages, len(r.Goroutines))
	}
	got, _ := json.Marshal(all)
	sameReportJSON(t, got, r.Goroutines)

	_, body := e.getOK("/api/v1/crashes/" + r.ID + "/goroutines?offset=500")
	if !strings.Contains(string(body), `"goroutines":[]`) || strings.Contains(string(body), "next_offset") {
		t.Errorf("past the end: %s", body)
	}
	for _, q := range []string{"offset=-1", "offset=x", "limit=0", "limit=x"} {
		resp, body := e.get("/api/v1/crashes/" + r.ID + "/goroutines?" + q)
		wantError(t, resp, body, http.StatusBadRequest, strings.Split(q, "=")[0])
	}
	resp, body := e.get("/api/v1/crashes/" + corepipe.NewID(now) + "/goroutines")
	wantError(t, resp, body, http.StatusNotFound, "not indexed")
}

// TestUICrashOfLeak: the page of a report with more goroutines than it
// shows has the crashing goroutine, the first others, and says how many
// more the JSON has.
func TestUICrashOfLeak(t *testing.T) {
	e := newEnv(t)
	r := leakReport(maxUIGoroutines + 500)
	// The crashing goroutine last: the page finds it by id.
	r.Goroutines = append(r.Goroutines[:1], append(r.Goroutines[2:], r.Goroutines[1])...)
	e.putStored(r, false)
	_, page := e.getOK("/crashes/" + r.ID)
	body := string(page)
	if !strings.Contains(body, "Crashing goroutine") || !strings.Contains(body, "/src/server/server.go:88") {
		t.Error("the page lacks the crashing goroutine")
	}
	others := len(r.Goroutines) - 1
	if want := fmt.Sprintf("(%d shown, %d more in the JSON)", maxUIGoroutines, others-maxUIGoroutines); !strings.Contains(body, want) {
		t.Errorf("the page does not say %q", want)
	}
}

// TestDamagedStoredReport: a stored report that does not read is the
// server's fault (500), not the client's (400), on every route that reads
// it.
func TestDamagedStoredReport(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	e.add(r, false)
	e.put(corepipe.ReportKey(r.ID), []byte(`{"schema":1,"stored_form":1,"goroutines":[{"id":1,"status":"x","stack":5}]}`))
	for _, p := range []string{"/api/v1/crashes/" + r.ID, "/api/v1/crashes/" + r.ID + "/goroutines", "/crashes/" + r.ID} {
		resp, body := e.get(p)
		// An internal error's detail goes to the log, not the client.
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("%s: %s %.200s", p, resp.Status, body)
		}
	}
}
