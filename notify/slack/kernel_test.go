package slack

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/kernlog"
	"github.com/corepipe/corepipe/notify"
)

// kernelPanic is the report of a real kernel's panic (Debian's 6.1 in
// qemu, sysrq-c), as the analyzer makes it, with the pods that were on
// the node.
func kernelPanic(t *testing.T, pods ...corepipe.PodRef) *corepipe.Report {
	t.Helper()
	f, err := os.Open("../../kernlog/testdata/qemu-sysrq-serial.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k, err := kernlog.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	k.Pods = pods
	return &corepipe.Report{
		Schema: corepipe.ReportSchema, ID: corepipe.KernelPanicID("node-7", k), Status: corepipe.StatusAnalyzed, CapturedAt: t0,
		Node: "node-7", Kind: corepipe.KindKernelPanic, Source: corepipe.SourceNetconsole,
		Kernel: k, Title: corepipe.KernelTitle(k), Signature: "kpanic/v1:feed",
	}
}

func TestKernelPanicAlert(t *testing.T) {
	r := kernelPanic(t,
		corepipe.PodRef{Namespace: "shop", Pod: "web-7d9f8c6b5-x2k4p", UID: "u1"},
		corepipe.PodRef{Namespace: "shop", Pod: "db-0", UID: "u2"})
	p := render(t, alertOf(notify.KindNew, r))

	if want := "Kernel panic on node-7: sysrq triggered crash in sysrq_handle_crash (2 pods)"; p.Text != want {
		t.Errorf("fallback %q, want %q", p.Text, want)
	}
	if len(p.Blocks) != 5 {
		t.Fatalf("%d blocks, want header, panic, fields, trace, links: %+v", len(p.Blocks), p.Blocks)
	}
	if h := p.Blocks[0].Text; h.Type != "plain_text" || h.Text != "Kernel panic on node-7: sysrq triggered crash in sysrq_handle_crash" {
		t.Errorf("header %+v", h)
	}
	wantBody(t, p, "Kernel panic - not syncing: sysrq triggered crash",
		"Node: node-7",
		"Kernel: 6.1.0-57-amd64",
		"Task: init (PID 1, CPU 0)",
		"Pods: 2: shop/web-7d9f8c6b5-x2k4p, shop/db-0",
		"From: node console log over netconsole",
		"Count: 1, first seen 2026-11-03 14:05 UTC")
	code := p.Blocks[3].Text.Text
	if !strings.HasPrefix(code, "```\nsysrq_handle_crash+0x16/0x20\n__handle_sysrq.cold+0x44/0x11c\nwrite_sysrq_trigger+0x24/0x40\n") || !strings.HasSuffix(code, "\n```") {
		t.Errorf("trace %q", code)
	}
	if l := p.Blocks[4].Elements[0].Text; !strings.Contains(l, "/crashes/"+r.ID+"|Crash "+r.ID+">") {
		t.Errorf("links %q", l)
	}
}

func TestKernelPanicAlertBounds(t *testing.T) {
	// A node with thousands of pods, a panic line of any length: the
	// message still fits Slack's limits and says how many it left out.
	var pods []corepipe.PodRef
	for i := range 3000 {
		pods = append(pods, corepipe.PodRef{Namespace: "batch", Pod: "job-" + itoa(i) + "-abcdefgh"})
	}
	r := kernelPanic(t, pods...)
	r.Kernel.Message = strings.Repeat("<!here> ", 1000)
	r.Title = corepipe.KernelTitle(r.Kernel)
	p := render(t, alertOf(notify.KindNew, r))
	checkLimits(t, p)
	pf := p.Blocks[2].Fields[3].Text
	if !strings.HasPrefix(pf, "Pods: 3000: batch/job-0-abcdefgh, ") || !strings.Contains(pf, " more") {
		t.Errorf("pods field %q", pf)
	}
	if strings.Contains(p.Blocks[1].Text.Text, "<!here>") {
		t.Errorf("a panic line pings the channel: %q", p.Blocks[1].Text.Text)
	}
	none := render(t, alertOf(notify.KindNew, kernelPanic(t)))
	if f := none.Blocks[2].Fields[3].Text; f != "Pods: none known" {
		t.Errorf("no pods: %q", f)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
