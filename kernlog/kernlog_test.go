package kernlog

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
)

func parseFile(t *testing.T, path string) *corepipe.KernelPanic {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A real serial console log: Debian's 6.1 kernel under qemu, panicked with
// echo c > /proc/sysrq-trigger.
func TestParseQemuSysrqSerial(t *testing.T) {
	k := parseFile(t, "testdata/qemu-sysrq-serial.log")
	if k.Message != "sysrq triggered crash" || k.Release != "6.1.0-57-amd64" {
		t.Errorf("message %q release %q", k.Message, k.Release)
	}
	if k.Task == nil || k.Task.PID != 1 || k.Task.Comm != "init" || k.Task.Tainted != "" {
		t.Errorf("task %+v", k.Task)
	}
	if !strings.HasPrefix(k.Hardware, "QEMU Standard PC") || k.RIP != "0033:0x47b7a0" || !k.RIPUser {
		t.Errorf("hardware %q rip %q user %v", k.Hardware, k.RIP, k.RIPUser)
	}
	if len(k.CallTrace) < 5 || k.CallTrace[0].Function != "dump_stack_lvl" || k.CallTrace[1].Function != "panic" {
		t.Fatalf("trace %+v", k.CallTrace)
	}
	var unreliable int
	for _, f := range k.CallTrace {
		if f.Unreliable {
			unreliable++
		}
	}
	if unreliable == 0 {
		t.Error("no ? frame marked unreliable")
	}
	top := corepipe.KernelTopFrames(k, 2)
	if len(top) != 2 || top[0].Function != "sysrq_handle_crash" {
		t.Errorf("top frames %+v", top)
	}
	if !k.Complete || k.Uptime == "" {
		t.Errorf("complete %v %v uptime %q", k.Complete, k.Incomplete, k.Uptime)
	}
	if got := corepipe.KernelTitle(k); got != "kernel panic: sysrq triggered crash in sysrq_handle_crash" {
		t.Errorf("title %q", got)
	}
}

// A real pstore record, as ramoops kept it across qemu's reset: the part
// header, "<N>[ t] text" lines up to the panic notifiers, then the ECC
// notice.
func TestParseQemuSysrqPstore(t *testing.T) {
	k := parseFile(t, "testdata/qemu-sysrq-pstore.txt")
	if k.Message != "sysrq triggered crash" || k.Release != "6.1.0-57-amd64" || k.Uptime != "6.743254" || !k.Complete {
		t.Errorf("message %q release %q uptime %q complete %v %v", k.Message, k.Release, k.Uptime, k.Complete, k.Incomplete)
	}
	if top := corepipe.KernelTopFrames(k, 1); len(top) != 1 || top[0].Function != "sysrq_handle_crash" || k.Task == nil || k.Task.Comm != "init" {
		t.Errorf("top %+v task %+v", top, k.Task)
	}
}

// An x86 NULL dereference in a module, in the format of Debian's 6.1
// kernel (pstore dmesg record form: "<N>[ t] text" after the header).
const nullDerefPstore = `Panic#1 Part1
<1>[  812.402117] BUG: kernel NULL pointer dereference, address: 0000000000000008
<1>[  812.402201] #PF: supervisor read access in kernel mode
<1>[  812.402244] #PF: error_code(0x0000) - not-present page
<6>[  812.402281] PGD 0 P4D 0 
<4>[  812.402316] Oops: 0000 [#1] PREEMPT SMP NOPTI
<4>[  812.402352] CPU: 3 PID: 4181 Comm: kworker/3:2 Tainted: G           OE      6.1.0-18-amd64 #1  Debian 6.1.76-1
<4>[  812.402410] Hardware name: Amazon EC2 m5.xlarge/, BIOS 1.0 10/16/2017
<4>[  812.402449] Workqueue: events mydrv_work [mydrv]
<4>[  812.402493] RIP: 0010:mydrv_poll+0x2e/0x90 [mydrv]
<4>[  812.402551] Code: 00 00 48 8b 47 08 <48> 8b 40 08 c3
<4>[  812.402707] RSP: 0018:ffffb1a0c0a77e48 EFLAGS: 00010246
<4>[  812.402936] Call Trace:
<4>[  812.402951]  <TASK>
<4>[  812.402968]  ? __die_body.cold+0x1a/0x1f
<4>[  812.403003]  ? page_fault_oops+0xd2/0x2b0
<4>[  812.403039]  ? exc_page_fault+0x70/0x170
<4>[  812.403073]  ? asm_exc_page_fault+0x22/0x30
<4>[  812.403108]  ? mydrv_poll+0x2e/0x90 [mydrv]
<4>[  812.403147]  mydrv_work+0x41/0x80 [mydrv]
<4>[  812.403183]  process_one_work+0x1c7/0x380
<4>[  812.403218]  worker_thread+0x4d/0x380
<4>[  812.403252]  ? rescuer_thread+0x3a0/0x3a0
<4>[  812.403287]  kthread+0xd7/0x100
<4>[  812.403320]  ? kthread_complete_and_exit+0x20/0x20
<4>[  812.403356]  ret_from_fork+0x1f/0x30
<4>[  812.403390]  </TASK>
<4>[  812.403405] Modules linked in: mydrv(OE) nls_ascii nls_cp437 vfat fat ena ptp pps_core
<4>[  812.403480] CR2: 0000000000000008
<4>[  812.403506] ---[ end trace 0000000000000000 ]---
<4>[  812.411219] RIP: 0010:mydrv_poll+0x2e/0x90 [mydrv]
<0>[  812.412005] Kernel panic - not syncing: Fatal exception
<0>[  812.413377] Kernel Offset: 0x2a400000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)
<0>[  812.413471] ---[ end Kernel panic - not syncing: Fatal exception ]---
`

func TestParseNullDerefInModule(t *testing.T) {
	k, err := Parse(strings.NewReader(nullDerefPstore))
	if err != nil {
		t.Fatal(err)
	}
	if k.Message != "Fatal exception" || k.FirstBug != "BUG: kernel NULL pointer dereference, address: 0000000000000008" {
		t.Errorf("message %q first bug %q", k.Message, k.FirstBug)
	}
	if k.Release != "6.1.0-18-amd64" {
		t.Errorf("release %q, want it from the CPU line", k.Release)
	}
	want := &corepipe.KernelTask{CPU: 3, PID: 4181, Comm: "kworker/3:2", Tainted: "G           OE",
		Taints: []string{"out-of-tree module loaded", "unsigned module loaded"}}
	if !reflect.DeepEqual(k.Task, want) {
		t.Errorf("task %+v", k.Task)
	}
	if k.RIP != "0010:mydrv_poll+0x2e/0x90 [mydrv]" || k.RIPUser {
		t.Errorf("rip %q user %v", k.RIP, k.RIPUser)
	}
	if len(k.Modules) != 8 || k.Modules[0] != "mydrv(OE)" {
		t.Errorf("modules %q", k.Modules)
	}
	top := corepipe.KernelTopFrames(k, 1)
	if len(top) != 1 || top[0] != (corepipe.KernelFrame{Function: "mydrv_work", Offset: "0x41", Size: "0x80", Module: "mydrv"}) {
		t.Errorf("top %+v", top)
	}
	if k.Uptime != "812.412005" || !k.Complete {
		t.Errorf("uptime %q complete %v %v", k.Uptime, k.Complete, k.Incomplete)
	}
	if got := corepipe.KernelClass(k); got != "BUG: kernel NULL pointer dereference, address: N" {
		t.Errorf("class %q", got)
	}
}

// Syslog's copy of the kernel's lines, cut inside the trace.
func TestParseSyslogCutTrace(t *testing.T) {
	log := `Dec  1 20:38:54 node-a kernel: [  501.1] watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [spin:977]
Dec  1 20:38:54 node-a kernel: [  501.2] CPU: 1 UID: 0 PID: 977 Comm: spin Tainted: G             L     6.12.9+bpo-amd64 #1  Debian 6.12.9-1~bpo12+1
Dec  1 20:38:54 node-a kernel: [  501.3] RIP: 0010:spin_loop+0x4/0x10 [spin]
Dec  1 20:38:54 node-a kernel: [  501.4] Call Trace:
Dec  1 20:38:54 node-a kernel: [  501.5]  <IRQ>
Dec  1 20:38:54 node-a kernel: [  501.6]  ? watchdog_timer_fn+0x1b4/0x210
Dec  1 20:38:54 node-a kernel: [  501.7]  </IRQ>
Dec  1 20:38:54 node-a kernel: [  501.8]  <TASK>
Dec  1 20:38:54 node-a kernel: [  501.9]  spin_write+0x20/0x40 [spin]
Dec  1 20:38:54 node-a kernel: [  502.0] Kernel panic - not syncing: softlockup: hung tasks
`
	k, err := Parse(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if k.Task == nil || k.Task.PID != 977 || k.Task.Comm != "spin" || !reflect.DeepEqual(k.Task.Taints, []string{"soft lockup occurred"}) {
		t.Errorf("task %+v", k.Task)
	}
	if k.Release != "6.12.9+bpo-amd64" || k.Message != "softlockup: hung tasks" {
		t.Errorf("release %q message %q", k.Release, k.Message)
	}
	if len(k.CallTrace) != 2 || k.CallTrace[1].Function != "spin_write" {
		t.Errorf("trace %+v", k.CallTrace)
	}
}

func TestParseCutInsideTrace(t *testing.T) {
	log := "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n" +
		"[    1.1] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-57-amd64 #1  Debian 6.1.192-3\n" +
		"[    1.2] Call Trace:\n[    1.3]  <TASK>\n[    1.4]  dump_stack_lvl+0x44/0x5c\n[    1.5]  panic+0x118/0x2f4\n"
	k, err := Parse(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if k.Complete || len(k.Incomplete) != 1 || !strings.Contains(k.Incomplete[0], "cut") {
		t.Errorf("complete %v %q", k.Complete, k.Incomplete)
	}
}

func TestParseNoPanic(t *testing.T) {
	_, err := Parse(strings.NewReader("[    0.0] Linux version 6.1.0\n[    1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n"))
	if !errors.Is(err, ErrNoPanic) {
		t.Fatalf("err %v", err)
	}
}

// A console log across boots: the panic is the first boot's, not mixed
// with the next boot's lines.
func TestParseStopsAtNextBoot(t *testing.T) {
	log := "[    0.0] Linux version 6.1.0-1-amd64 (x)\n[    5.0] Kernel panic - not syncing: first\n" +
		"[    0.0] Linux version 6.1.0-2-amd64 (x)\n[    0.1] CPU: 0 PID: 1 Comm: x Not tainted 6.1.0-2-amd64 #1\n"
	k, err := Parse(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "6.1.0-1-amd64" || k.Task != nil {
		t.Errorf("release %q task %+v", k.Release, k.Task)
	}
}

func TestParseLine(t *testing.T) {
	for in, want := range map[string]Line{
		"<6>[  123.456789] text":                   {Text: "text", Level: 6, Uptime: "123.456789"},
		"[    0.000000] [    T0] Linux version 6":  {Text: "Linux version 6", Level: -1, Uptime: "0.000000"},
		"Dec 01 20:38:54 node kernel: Call Trace:": {Text: "Call Trace:", Level: -1},
		"[not a time] text":                        {Text: "[not a time] text", Level: -1},
		"<12>[    1.5] x\r\n":                      {Text: "x", Level: 4, Uptime: "1.5"},
	} {
		if got := ParseLine(in); got != want {
			t.Errorf("ParseLine(%q) = %+v, want %+v", in, got, want)
		}
	}
}

// A line longer than MaxLine costs no more than MaxLine.
func TestParseLongLineBounded(t *testing.T) {
	log := "[ 1.0] Kernel panic - not syncing: " + strings.Repeat("x", 10*MaxLine) + "\n"
	k, err := Parse(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Message) > MaxLine {
		t.Errorf("message of %d bytes", len(k.Message))
	}
}

func FuzzParse(f *testing.F) {
	f.Add(nullDerefPstore)
	f.Add("[ 1.0] Kernel panic - not syncing: x\nCall Trace:\n ? a+0x1/0x2 [m]\n")
	f.Fuzz(func(t *testing.T, log string) {
		k, err := Parse(strings.NewReader(log))
		if err != nil {
			return
		}
		if len(k.CallTrace) > MaxFrames || len(k.Modules) > maxModules {
			t.Fatalf("%d frames %d modules", len(k.CallTrace), len(k.Modules))
		}
		corepipe.KernelTitle(k)
		corepipe.KernelPanicID("n", k)
	})
}

func TestParsePstoreHeader(t *testing.T) {
	for line, want := range map[string]PstorePart{
		"Panic#1 Part1\n":   {Reason: "Panic", Count: 1, Part: 1},
		"Oops#12 Part3":     {Reason: "Oops", Count: 12, Part: 3},
		"Emergency#0 Part2": {Reason: "Emergency", Count: 0, Part: 2},
	} {
		if got, ok := ParsePstoreHeader(line); !ok || got != want {
			t.Errorf("%q: %+v %v", line, got, ok)
		}
	}
	for _, line := range []string{"[    1.000000] Panic#1 Part1", "Panic#1 Part0", "Panic#x Part1", "Panic 1 Part1", ""} {
		if _, ok := ParsePstoreHeader(line); ok {
			t.Errorf("%q taken for a header", line)
		}
	}
	if !IsPstoreNotice("ECC: No errors detected") || IsPstoreNotice("[    1.0] ECC: x") {
		t.Error("ECC notice")
	}
}

// The crash ID rule: the panic message and its line's timestamp, not the
// node (the receiver and the agent name it differently) nor the trace (a
// pstore part may lack it); without timestamps the node and the trace.
func TestKernelPanicIDRule(t *testing.T) {
	full := "[   12.000001] BUG: kernel NULL pointer dereference, address: 0000000000000008\n" +
		"[   12.000002] Call Trace:\n[   12.000003]  mydrv_work+0x41/0x80 [mydrv]\n" +
		"[   12.345678] Kernel panic - not syncing: Fatal exception\n"
	tailOnly := "[   12.345678] Kernel panic - not syncing: Fatal exception\n"
	later := "[   12.345679] Kernel panic - not syncing: Fatal exception\n"
	id := func(node, log string) string {
		k, err := Parse(strings.NewReader(log))
		if err != nil {
			t.Fatal(err)
		}
		return corepipe.KernelPanicID(node, k)
	}
	if id("10.0.0.7", full) != id("node-7", tailOnly) {
		t.Error("one panic, from netconsole by address and from pstore's tail by name, has two IDs")
	}
	if id("node-7", tailOnly) == id("node-7", later) {
		t.Error("panics a microsecond apart share an ID")
	}
	untimed := "Kernel panic - not syncing: Fatal exception\n"
	if id("node-7", untimed) == id("node-8", untimed) || id("node-7", untimed) != id("node-7", untimed) {
		t.Error("untimed panics: the node must tell them apart, and only it")
	}
}
