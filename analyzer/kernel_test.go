package analyzer

import (
	"context"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/netconsoletest"
	"github.com/corepipe/corepipe/kernlog"
	"github.com/corepipe/corepipe/netconsole"
)

// TestHandleKernelPanic: a panic recorded from netconsole — twice, as two
// receivers would — is one crash and one kernel_panic report.
func TestHandleKernelPanic(t *testing.T) {
	rg := newRig(t)
	ctx := context.Background()
	capture := netconsoletest.Replay(t, "../netconsole/testdata/qemu-sysrq-ext.jsonl")
	rec := &netconsole.Recorder{Blobs: rg.blobs, Queue: rg.queue}
	c, err := rec.Record(ctx, capture)
	if err != nil {
		t.Fatal(err)
	}
	again, err := rec.Record(ctx, capture)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != c.ID {
		t.Fatalf("the same panic got IDs %s and %s", c.ID, again.ID)
	}
	a := New(Config{Blobs: rg.blobs, Queue: rg.queue, Inspector: &fakeInspector{t: t}, TempDir: t.TempDir()})
	a.Handle(ctx, rg.next(t))
	if rg.pending(t) {
		t.Error("the second recording of the panic was queued again")
	}
	rep := rg.report(t, c.ID)
	if rep.Status != corepipe.StatusAnalyzed || rep.Kind != corepipe.KindKernelPanic || rep.Source != corepipe.SourceNetconsole {
		t.Fatalf("status %q kind %q source %q: %s", rep.Status, rep.Kind, rep.Source, rep.Error)
	}
	k := rep.Kernel
	if k == nil || k.Message != "sysrq triggered crash" || k.Release != "6.1.0-57-amd64" || k.Task == nil || k.Task.Comm != "init" {
		t.Fatalf("kernel %+v", k)
	}
	if len(k.CallTrace) < 10 || rep.Title != "kernel panic: sysrq triggered crash in sysrq_handle_crash" || rep.Node != "127.0.0.1" {
		t.Errorf("title %q node %q, %d frames", rep.Title, rep.Node, len(k.CallTrace))
	}
	// The capture lacks 124 numbered records: the report says so.
	if k.Complete || !strings.Contains(strings.Join(k.Incomplete, ";"), "124 console records never arrived") {
		t.Errorf("complete %v: %q", k.Complete, k.Incomplete)
	}
	if !strings.HasPrefix(rep.Signature, KernelSignatureVersion+":") || len(rep.Diagnosis) == 0 || rep.Diagnosis[0].Code != CodeKernelSysrq {
		t.Errorf("signature %q diagnosis %+v", rep.Signature, rep.Diagnosis)
	}
}

// The same driver bug on two nodes, at other addresses, PIDs and times,
// is one group; another bug is another.
func TestKernelSignatureGroups(t *testing.T) {
	parse := func(log string) *corepipe.KernelPanic {
		k, err := kernlog.Parse(strings.NewReader(log))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	const tmpl = `[ @T@] BUG: kernel NULL pointer dereference, address: @ADDR@
[ @T@] CPU: 3 PID: @PID@ Comm: kworker/3:2 Tainted: G           OE      6.1.0-18-amd64 #1
[ @T@] Call Trace:
[ @T@]  <TASK>
[ @T@]  ? __die_body.cold+0x1a/0x1f
[ @T@]  ? page_fault_oops+0xd2/0x2b0
[ @T@]  mydrv_work+0x41/0x80 [mydrv]
[ @T@]  process_one_work+0x1c7/0x380
[ @T@]  </TASK>
[ @T@] Kernel panic - not syncing: Fatal exception
`
	a := parse(strings.NewReplacer("@T@", "812.4", "@ADDR@", "0000000000000008", "@PID@", "4181").Replace(tmpl))
	b := parse(strings.NewReplacer("@T@", "33.9", "@ADDR@", "0000000000000010", "@PID@", "77").Replace(tmpl))
	c := parse(strings.NewReplacer("@T@", "33.9", "@ADDR@", "0000000000000010", "@PID@", "77", "mydrv_work", "otherdrv_work").Replace(tmpl))
	if KernelSignature(a) != KernelSignature(b) {
		t.Error("the same bug on two nodes is two groups")
	}
	if KernelSignature(a) == KernelSignature(c) {
		t.Error("two bugs are one group")
	}
	if corepipe.KernelPanicID("n1", a) == corepipe.KernelPanicID("n1", b) {
		t.Error("two panics share an ID")
	}
	d := KernelDiagnosis(a)
	if len(d) != 1 || d[0].Code != CodeKernelNullModule || !strings.Contains(d[0].Message, "mydrv") {
		t.Errorf("diagnosis %+v", d)
	}
}
