package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// embeddedQueue is a queue on a real embedded JetStream.
func embeddedQueue(t *testing.T) *natsq.Queue {
	t.Helper()
	srv := natstest.StartEmbedded(t)
	q, err := natsq.Open(context.Background(), srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(context.Background()) })
	return q
}

// nextQueued waits up to 5 s for the next message on the analyzers' queue.
func nextQueued(cons corepipe.Consumer) (corepipe.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cons.Next(ctx)
}

// reanalysisEnv is an env whose re-analyses go to a real embedded
// JetStream, and the analyzers' consumer of it.
func reanalysisEnv(t *testing.T, tweak func(*Config)) (*env, corepipe.Consumer) {
	t.Helper()
	q := embeddedQueue(t)
	cons, err := q.Crashes(context.Background(), "analyzer")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(c *Config) {
		c.Republisher = q
		if tweak != nil {
			tweak(c)
		}
	})
	return e, cons
}

// keptCrash indexes a crash with its executable and manifest stored, as
// the agent leaves them, and its core unless the store lost it (expired).
func keptCrash(e *env, age time.Duration, gnu string, expired bool) *corepipe.Report {
	e.t.Helper()
	r := newReport(age)
	c := &corepipe.Crash{Schema: corepipe.ManifestSchema, ID: r.ID, CapturedAt: r.CapturedAt, Node: r.Node,
		Process: r.Process, Environ: map[string]string{"GOTRACEBACK": "crash"}}
	c.Core = corepipe.CoreArtifact{Key: corepipe.CoreKey(c)}
	c.Executable = corepipe.ExeArtifact{Path: r.Process.Exe, Found: true, BuildID: gnu, Key: corepipe.ExecutableKey("feed" + gnu)}
	if !expired {
		e.put(c.Core.Key, zstdBytes(e.t, []byte("\x7fELF core")))
	}
	e.put(c.Executable.Key, []byte("\x7fELF exe"))
	b, err := json.Marshal(c)
	if err != nil {
		e.t.Fatal(err)
	}
	e.put(corepipe.ManifestKey(c), b)
	r.Artifacts.Core, r.Artifacts.Executable = c.Core, c.Executable
	e.add(r, true)
	return r
}

func (e *env) reanalyze(body string, header http.Header) (*http.Response, wire.ReanalyzeResult, []byte) {
	e.t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	for k, v := range header {
		h[k] = v
	}
	resp, b := e.do("POST", "/api/v1/reanalyze", h, strings.NewReader(body))
	var res wire.ReanalyzeResult
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &res); err != nil {
			e.t.Fatalf("decode %s: %v", b, err)
		}
	}
	return resp, res, b
}

// TestReanalyzeByBuildID queues the kept crashes of one build again, each
// with its stored manifest and the next revision, and says why it skips
// the crashes it cannot analyse again.
func TestReanalyzeByBuildID(t *testing.T) {
	e, cons := reanalysisEnv(t, nil)
	const gnu = "4c1d2f00aa"
	kept := keptCrash(e, 5*time.Minute, gnu, false)
	again := keptCrash(e, 4*time.Minute, gnu, false)
	again.Revision = 2
	e.add(again, true)
	expired := keptCrash(e, 3*time.Minute, gnu, true)
	fromLog := newReport(2 * time.Minute)
	fromLog.Source = corepipe.SourceLog
	fromLog.Artifacts.Executable.BuildID = gnu
	e.add(fromLog, true)
	pending := newReport(time.Minute)
	pending.Status = corepipe.StatusPending
	pending.Artifacts.Executable.BuildID = gnu
	e.add(pending, false)
	keptCrash(e, 6*time.Minute, "0ther0b1d", false)

	resp, res, body := e.reanalyze(`{"build_id": "gnu:`+gnu+`"}`, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST: %s: %s", resp.Status, body)
	}
	wantQueued := []wire.QueuedCrash{{ID: again.ID, Revision: 3}, {ID: kept.ID, Revision: 1}}
	if res.Matched != 5 || !slices.Equal(res.Queued, wantQueued) {
		t.Errorf("matched %d, queued %+v; want 5, %+v", res.Matched, res.Queued, wantQueued)
	}
	reasons := map[string]string{}
	for _, s := range res.Skipped {
		reasons[s.ID] = s.Reason
	}
	for id, want := range map[string]string{
		expired.ID: "the core is no longer in the blob store", fromLog.ID: "no core was stored", pending.ID: "has not finished",
	} {
		if !strings.Contains(reasons[id], want) {
			t.Errorf("crash %s skipped for %q, want %q", id, reasons[id], want)
		}
	}
	for range wantQueued {
		m, err := nextQueued(cons)
		if err != nil {
			t.Fatalf("no crash queued: %v", err)
		}
		var c corepipe.Crash
		if err := json.Unmarshal(m.Data(), &c); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(wantQueued, func(q wire.QueuedCrash) bool { return q.ID == c.ID })
		if i < 0 || c.Revision != wantQueued[i].Revision || c.Core.Key == "" || c.Environ["GOTRACEBACK"] != "crash" {
			t.Errorf("queued %s revision %d core %q environ %v: want one of %+v with its stored manifest", c.ID, c.Revision, c.Core.Key, c.Environ, wantQueued)
		}
		m.Ack(context.Background())
	}

	// A page at a time: the cursor goes on where the limit stopped.
	_, res, body = e.reanalyze(`{"build_id": "`+gnu+`", "limit": 1}`, nil)
	if res.Matched != 1 || res.NextCursor == "" {
		t.Errorf("limit 1: %s", body)
	}
	_, res, body = e.reanalyze(`{"build_id": "`+gnu+`", "limit": 1, "cursor": "`+res.NextCursor+`"}`, nil)
	if res.Matched != 1 || len(res.Skipped) != 1 || res.Skipped[0].ID != fromLog.ID {
		t.Errorf("the second page of one: %s", body)
	}

	// Asking again queues a crash again: the first request's message IDs
	// do not stop the second.
	if _, res, body := e.reanalyze(`{"id": "`+kept.ID+`"}`, nil); len(res.Queued) != 1 {
		t.Errorf("asked again: %s", body)
	}
	if _, err := nextQueued(cons); err != nil {
		t.Errorf("asked again, nothing queued: %v", err)
	}
}

func TestReanalyzeOneCrash(t *testing.T) {
	e, cons := reanalysisEnv(t, nil)
	r := keptCrash(e, time.Minute, "", false)
	if _, res, body := e.reanalyze(fmt.Sprintf(`{"id": %q}`, r.ID), nil); res.Matched != 1 || len(res.Queued) != 1 {
		t.Fatalf("reanalyze %s: %s", r.ID, body)
	}
	if _, err := nextQueued(cons); err != nil {
		t.Fatalf("nothing queued: %v", err)
	}
}

func TestReanalyzeRefusals(t *testing.T) {
	e, _ := reanalysisEnv(t, nil)
	r := keptCrash(e, time.Minute, "", false)
	for _, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{`{}`, http.StatusBadRequest, "say which crashes"},
		{`{"signature": "gocrash/v1:00", "limit": 1001}`, http.StatusBadRequest, "limit 1001"},
		{`{"build_id": "gnu:xyz"}`, http.StatusBadRequest, "build ID"},
		{fmt.Sprintf(`{"id": %q, "signature": "s"}`, r.ID), http.StatusBadRequest, "one crash"},
		{`{"id": "../../etc"}`, http.StatusBadRequest, "crash id"},
		{`{"id": "01J0000000000000000000000A"}`, http.StatusNotFound, "not indexed"},
		{`{"everything": true}`, http.StatusBadRequest, "JSON object"},
		{`not json`, http.StatusBadRequest, "JSON object"},
	} {
		resp, _, body := e.reanalyze(tc.body, nil)
		wantError(t, resp, body, tc.status, tc.want)
	}

	off := newEnvWith(t, func(*Config) {})
	resp, body := off.do("POST", "/api/v1/reanalyze", nil, strings.NewReader(`{"signature": "s"}`))
	wantError(t, resp, body, http.StatusServiceUnavailable, "re-analysis is off")
}

// TestUploadReanalyzesTheBuild: a build's debug file, stored for the first
// time, has the build's kept crashes queued again at once; uploading it
// again queues nothing.
func TestUploadReanalyzesTheBuild(t *testing.T) {
	e, cons := reanalysisEnv(t, nil)
	b := newDebugBuild(t)
	r := keptCrash(e, time.Minute, b.id, false)
	for i, want := range []int{1, 0} {
		resp, body := e.upload("", b.id, b.debug)
		var res wire.Uploaded
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatalf("upload %d: %s: %s", i, resp.Status, body)
		}
		got := 0
		if res.Reanalysis != nil {
			got = len(res.Reanalysis.Queued)
		}
		if got != want {
			t.Errorf("upload %d queued %d crashes for re-analysis, want %d: %s", i, got, want, body)
		}
	}
	m, err := nextQueued(cons)
	if err != nil {
		t.Fatalf("nothing queued: %v", err)
	}
	var c corepipe.Crash
	if err := json.Unmarshal(m.Data(), &c); err != nil || c.ID != r.ID || c.Revision != 1 {
		t.Errorf("queued %s revision %d (%v), want %s revision 1", c.ID, c.Revision, err, r.ID)
	}
}
