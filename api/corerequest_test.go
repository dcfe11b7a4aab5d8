package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// TestRequestCore: a core kept on its node is requested through the API
// and the request reaches that node's stream on a real JetStream; a core
// whose time is up, or that was never kept, cannot be requested, and says
// why; the crash page offers the request to a debugger only.
func TestRequestCore(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	q, err := natsq.Open(context.Background(), srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t); c.CoreRequests = q })
	kept := newReport(time.Minute)
	kept.Artifacts.Core = corepipe.CoreArtifact{Location: &corepipe.CoreLocation{State: corepipe.CoreOnNode, Node: "node-7", Until: now.Add(time.Hour), Reason: "over the quota"}}
	e.add(kept, true)
	gone := newReport(2 * time.Minute)
	gone.Artifacts.Core = corepipe.CoreArtifact{Location: &corepipe.CoreLocation{State: corepipe.CoreOnNode, Node: "node-7", Until: now.Add(-time.Minute), Reason: "over the quota"}}
	e.add(gone, true)
	dropped := newReport(3 * time.Minute)
	dropped.Artifacts.Core = corepipe.CoreArtifact{Dropped: "rate_limited"}
	e.add(dropped, true)

	debugger := http.Header{"Authorization": {"Bearer " + debuggerToken}}
	resp, body := e.do("POST", "/api/v1/crashes/"+kept.ID+"/core/request", debugger, nil)
	var answer wire.CoreRequested
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &answer) != nil || !answer.Requested || answer.Location.Node != "node-7" {
		t.Fatalf("request a kept core: %d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan string, 1)
	go q.CoreRequests(ctx, "node-7", func(ctx context.Context, r natsq.CoreRequest) {
		r.Ack()
		got <- r.ID
		cancel()
	})
	select {
	case id := <-got:
		if id != kept.ID {
			t.Errorf("node-7 was asked for %s, want %s", id, kept.ID)
		}
	case <-ctx.Done():
		t.Fatal("the request never reached node-7")
	}

	for _, tc := range []struct {
		r    *corepipe.Report
		want string
	}{{gone, "expired: kept on node node-7 until"}, {dropped, "never kept: the collector dropped it: rate_limited"}} {
		resp, body := e.do("POST", "/api/v1/crashes/"+tc.r.ID+"/core/request", debugger, nil)
		wantError(t, resp, body, http.StatusNotFound, tc.want)
	}
	resp, body = e.do("POST", "/api/v1/crashes/"+kept.ID+"/core/request", http.Header{"Authorization": {"Bearer " + viewerToken}}, nil)
	wantError(t, resp, body, http.StatusForbidden, "debugger")

	// The crash page says where the core is, and offers a debugger the
	// request, which its form makes.
	cookie := e.signIn(debuggerToken)
	_, page := e.do("GET", "/crashes/"+kept.ID, cookie, nil)
	if !strings.Contains(string(page), "Core: on node node-7 until") || !strings.Contains(string(page), `action="/crashes/`+kept.ID+`/core/request"`) {
		t.Errorf("the debugger's crash page lacks where the core is or its request button")
	}
	_, page = e.do("GET", "/crashes/"+kept.ID, e.signIn(viewerToken), nil)
	if strings.Contains(string(page), "/core/request") {
		t.Error("a viewer is offered the core request")
	}
	_, page = e.do("GET", "/crashes/"+gone.ID, cookie, nil)
	if !strings.Contains(string(page), "Core: expired") {
		t.Error("the page of a core past its time does not say it expired")
	}
	h := cookie.Clone()
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("Origin", e.url)
	resp, body = e.do("POST", "/crashes/"+kept.ID+"/core/request", h, strings.NewReader(url.Values{"csrf": {csrfOf(page)}}.Encode()))
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(resp.Header.Get("Location"), "?core=requested") {
		t.Errorf("the page's request: %d %s %.200s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}
