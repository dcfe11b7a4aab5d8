package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

// A kernel panic's console log is a debugger's to read; a viewer, and a
// crash that has none, get errors that say so.
func TestGetConsole(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t) })
	r := newReport(time.Minute)
	r.Kind = corepipe.KindKernelPanic
	r.Artifacts.Console = &corepipe.ConsoleArtifact{Source: corepipe.SourceNetconsole,
		Key: corepipe.ConsoleKey(&corepipe.Crash{ID: r.ID, CapturedAt: r.CapturedAt, Node: r.Node})}
	log := "<0>[    9.780877] Kernel panic - not syncing: sysrq triggered crash\n"
	e.put(r.Artifacts.Console.Key, []byte(log))
	e.add(r, true)
	plain := storedCrash(e, time.Minute)
	as := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

	resp, body := e.do("GET", "/api/v1/crashes/"+r.ID+"/console", as(debuggerToken), nil)
	if resp.StatusCode != http.StatusOK || string(body) != log {
		t.Fatalf("debugger: %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	if resp, _ := e.do("GET", "/api/v1/crashes/"+r.ID+"/console", as(viewerToken), nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer: %d", resp.StatusCode)
	}
	if resp, _ := e.do("GET", "/api/v1/crashes/"+plain.ID+"/console", as(debuggerToken), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a crash without a console log: %d", resp.StatusCode)
	}
	// A key outside the crashes' prefix is never opened.
	r.Artifacts.Console.Key = "reports/" + plain.ID + ".json"
	e.add(r, false)
	if resp, _ := e.do("GET", "/api/v1/crashes/"+r.ID+"/console", as(debuggerToken), nil); resp.StatusCode == http.StatusOK {
		t.Errorf("a console key outside cores/: %d", resp.StatusCode)
	}
}
