package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

// consoleLog is the console log of storedKernelPanic.
const consoleLog = "<0>[    9.780877] Kernel panic - not syncing: sysrq triggered crash\n"

// storedKernelPanic indexes a kernel panic with its console log stored.
func storedKernelPanic(e *env) *corepipe.Report {
	e.t.Helper()
	r := newReport(time.Minute)
	r.Kind = corepipe.KindKernelPanic
	r.Artifacts.Console = &corepipe.ConsoleArtifact{Source: corepipe.SourceNetconsole,
		Key: corepipe.ConsoleKey(&corepipe.Crash{ID: r.ID, CapturedAt: r.CapturedAt, Node: r.Node})}
	e.put(r.Artifacts.Console.Key, []byte(consoleLog))
	e.add(r, true)
	return r
}

// A kernel panic's console log is a debugger's to read; a viewer, and a
// crash that has none, get errors that say so.
func TestGetConsole(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t) })
	r := storedKernelPanic(e)
	plain := storedCrash(e, time.Minute)
	as := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

	resp, body := e.do("GET", "/api/v1/crashes/"+r.ID+"/console", as(debuggerToken), nil)
	if resp.StatusCode != http.StatusOK || string(body) != consoleLog {
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

// The crash page of a kernel panic shows its message, task and trace.
func TestCrashPageKernel(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	r.Kind = corepipe.KindKernelPanic
	r.Kernel = &corepipe.KernelPanic{Release: "6.1.0-57-amd64", Message: "Fatal exception", FirstBug: "BUG: kernel NULL pointer dereference, address: 0000000000000008",
		Task:      &corepipe.KernelTask{CPU: 3, PID: 4181, Comm: "kworker/3:2", Taints: []string{"out-of-tree module loaded"}},
		CallTrace: []corepipe.KernelFrame{{Function: "page_fault_oops", Offset: "0xd2", Size: "0x2b0", Unreliable: true}, {Function: "mydrv_work", Offset: "0x41", Size: "0x80", Module: "mydrv"}},
		Pods:      []corepipe.PodRef{{Namespace: "shop", Pod: "web-1"}}}
	e.add(r, true)
	_, body := e.getOK("/crashes/" + r.ID)
	for _, want := range []string{"Kernel panic - not syncing: Fatal exception", "BUG: kernel NULL pointer dereference", "kworker/3:2", "out-of-tree module loaded",
		"? page_fault_oops+0xd2/0x2b0", "mydrv_work+0x41/0x80 [mydrv]", "shop/web-1", "6.1.0-57-amd64"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
