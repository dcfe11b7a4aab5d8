package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
)

// qemuBoot is how every test VM's /init starts: busybox's applets, the
// kernel's file systems, and the NIC's and netconsole's configfs modules.
const qemuBoot = `#!/bin/busybox sh
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /m/e1000.ko
insmod /m/configfs.ko
`

// qemuInit is the VM's /init: it brings up the NIC, starts netconsole with
// the targets on the kernel command line, prints a line longer than plain
// netconsole's 1000-byte chunks, and panics the kernel.
const qemuInit = qemuBoot + `ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
sleep 2
insmod /m/netconsole.ko netconsole="$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^kp.target=//p')"
echo "corepipe-test: $(head -c 975 /dev/zero | tr '\0' x)" > /dev/kmsg
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
`

// TestQemuKernelPanic boots Debian's kernel under qemu with netconsole
// sending, extended and plain at once, to "corepipe dev --netconsole", and
// panics it: one kernel_panic report (the two targets are one panic) with
// the message, task, release and call trace, and the reassembled console
// log with the long line intact.
func TestQemuKernelPanic(t *testing.T) {
	qemu, kdir := qemuKernel(t, "netconsole.ko", "configfs.ko", "e1000.ko")
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.cpio")
	writeInitramfs(t, initrd, kdir, qemuInit, []string{"netconsole.ko", "configfs.ko", "e1000.ko"}, nil)

	port := freeUDPPort(t)

	ctx, cancel := context.WithCancel(context.Background())
	out := &testkit.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runCLI(ctx, out, nil, "dev", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
			"--netconsole", fmt.Sprintf("127.0.0.1:%d", port), "--netconsole-quiet", "2s")
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	base := waitUI(t, out, done)

	// The guest may send only to 10.0.2.2, user-mode networking's alias
	// of the host's loopback; slirp's MAC answers for it.
	targets := fmt.Sprintf("+6665@10.0.2.15/eth0,%d@10.0.2.2/52:55:0a:00:02:02;6666@10.0.2.15/eth0,%d@10.0.2.2/52:55:0a:00:02:02", port, port)
	vmctx, vmcancel := context.WithTimeout(ctx, 90*time.Second)
	defer vmcancel()
	start := time.Now()
	vm := exec.CommandContext(vmctx, qemu, "-accel", "tcg", "-nographic", "-no-reboot", "-m", "256",
		"-kernel", filepath.Join(kdir, "vmlinuz"), "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 kp.target="+targets,
		"-netdev", "user,id=n0", "-device", "e1000,netdev=n0")
	var serial bytes.Buffer
	vm.Stdout, vm.Stderr = &serial, &serial
	if err := vm.Run(); err != nil {
		t.Fatalf("qemu: %v\n%s", err, tail(serial.String(), 3000))
	}
	t.Logf("boot to panic and reset: %s", time.Since(start).Round(100*time.Millisecond))
	if !strings.Contains(serial.String(), "Kernel panic - not syncing: sysrq triggered crash") {
		t.Fatalf("the VM did not panic:\n%s", tail(serial.String(), 3000))
	}

	waitKernelReport(t, base, out)
	t.Logf("panic to analysed report: %s", time.Since(start).Round(100*time.Millisecond))
	time.Sleep(3 * time.Second) // the second target's capture, had it made a second crash
	reports := kernelCrashes(t, base)
	if len(reports) != 1 {
		t.Fatalf("%d kernel panics for one panic sent to two targets", len(reports))
	}
	var r corepipe.Report
	getJSON(t, base+"/api/v1/crashes/"+reports[0].ID, &r)
	k := r.Kernel
	if k == nil || k.Message != "sysrq triggered crash" || k.Release == "" || !strings.HasPrefix(k.Release, "6.") ||
		k.Task == nil || k.Task.Comm != "init" || k.Task.PID != 1 {
		t.Fatalf("kernel section %+v", k)
	}
	if r.Title != "kernel panic: sysrq triggered crash in sysrq_handle_crash" || r.Source != corepipe.SourceNetconsole || len(k.CallTrace) < 5 {
		t.Errorf("title %q source %q, %d frames", r.Title, r.Source, len(k.CallTrace))
	}
	resp, err := http.Get(base + "/api/v1/crashes/" + r.ID + "/console")
	if err != nil {
		t.Fatal(err)
	}
	console, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !regexp.MustCompile(`corepipe-test: x{975}\n`).Match(console) {
		t.Errorf("console log (%d): the long line is not intact:\n%s", resp.StatusCode, tail(string(console), 2000))
	}
}

// qemuKernel is qemu and the directory of Debian's kernel, busybox and
// modules; the test skips without them.
func qemuKernel(t *testing.T, modules ...string) (qemu, kdir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed: scripts/install-tools.sh installs it")
	}
	// scripts/install-tools.sh's cache, as the Makefile has it.
	cache := os.Getenv("COREPIPE_CACHE")
	if cache == "" {
		cache = filepath.Join(os.Getenv("HOME"), ".cache", "corepipe")
	}
	kdir = filepath.Join(cache, "qemu-kernel")
	for _, f := range append([]string{"vmlinuz", "busybox"}, modules...) {
		if _, err := os.Stat(filepath.Join(kdir, f)); err != nil {
			t.Skipf("%s is missing: scripts/install-tools.sh unpacks Debian's kernel there", filepath.Join(kdir, f))
		}
	}
	return qemu, kdir
}

// freeUDPPort is a loopback UDP port nothing listens on now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	return udp.LocalAddr().(*net.UDPAddr).Port
}

// waitKernelReport waits up to 30 s for the API to list an analysed kernel
// panic.
func waitKernelReport(t *testing.T, base string, log *testkit.SyncBuffer) {
	t.Helper()
	var reports []corepipe.Report
	deadline := time.Now().Add(30 * time.Second)
	for len(reports) == 0 || reports[0].Status != corepipe.StatusAnalyzed {
		if time.Now().After(deadline) {
			t.Fatalf("no analysed kernel panic; crashes %+v; log:\n%s", reports, tail(log.String(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
		reports = kernelCrashes(t, base)
	}
}

func kernelCrashes(t *testing.T, base string) []corepipe.Report {
	var page struct {
		Crashes []corepipe.Report `json:"crashes"`
	}
	getJSON(t, base+"/api/v1/crashes", &page)
	var out []corepipe.Report
	for _, c := range page.Crashes {
		if c.Kind == corepipe.KindKernelPanic || c.Artifacts.Console != nil {
			out = append(out, c)
		}
	}
	return out
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// waitUI is dev's UI address, once it has printed it.
func waitUI(t *testing.T, out *testkit.SyncBuffer, done <-chan error) string {
	t.Helper()
	re := regexp.MustCompile(`UI at (http://[^/\s]+)/`)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("dev exited: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("dev never printed its UI address")
	return ""
}

// writeInitramfs writes a newc cpio archive (the kernel unpacks it
// uncompressed) with busybox, the init script, the modules (from kdir, into
// /m) and files (archive name to host path).
func writeInitramfs(t *testing.T, path, kdir, init string, modules []string, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	n, ino := 0, 1
	pad := func() {
		for ; n%4 != 0; n++ {
			w.WriteByte(0)
		}
	}
	add := func(name string, mode uint32, data []byte) {
		h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\x00", ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0, name)
		ino++
		w.WriteString(h)
		n += len(h)
		pad()
		w.Write(data)
		n += len(data)
		pad()
	}
	read := func(path string) []byte {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, d := range []string{"bin", "m", "proc", "sys", "dev", "tmp"} {
		add(d, 0o040755, nil)
	}
	add("bin/busybox", 0o100755, read(filepath.Join(kdir, "busybox")))
	add("init", 0o100755, []byte(init))
	for _, m := range modules {
		add("m/"+m, 0o100644, read(filepath.Join(kdir, m)))
	}
	for name, host := range files {
		add(name, 0o100755, read(host))
	}
	add("TRAILER!!!", 0, nil)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
