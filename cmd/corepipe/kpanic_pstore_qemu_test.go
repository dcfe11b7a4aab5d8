package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/miniotest"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
)

// ramoops keeps the kernel's dump in 1 MiB of RAM at 63 MiB that the
// kernel is told to leave alone (memmap=), which survives qemu's reset.
const (
	ramoopsAddr = "0x3f00000"
	ramoopsArgs = "mem_address=" + ramoopsAddr + " mem_size=0x100000 record_size=0x20000 ecc=1"
)

// qemuPstoreInit is the VM's /init for both boots. The first (pstore
// empty) sends its kernel log over netconsole and panics; panic=1 resets
// the VM, and the second finds the dump in pstore, runs the real agent
// against the host's NATS and MinIO until it has recorded the panic and
// removed the record, shows what pstore holds then, and powers off.
const qemuPstoreInit = qemuBoot + `insmod /m/reed_solomon.ko
insmod /m/ramoops.ko ` + ramoopsArgs + `
mount -t pstore pstore /sys/fs/pstore
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^kp.$1=//p"; }
if ls /sys/fs/pstore/dmesg-* >/dev/null 2>&1; then
	echo "corepipe-test: second boot, pstore: $(ls /sys/fs/pstore | tr '\n' ' ')"
	echo "corepipe-test: record begin"
	cat /sys/fs/pstore/dmesg-ramoops-0
	echo "corepipe-test: record end"
	hostname vm-node
	export AWS_ACCESS_KEY_ID="$(arg user)" AWS_SECRET_ACCESS_KEY="$(arg pass)"
	/corepipe agent --spool /tmp/spool --crash-output-dir "" --blob "$(arg blob)" --nats "$(arg nats)" --systemd-pstore "" --kdump "" &
	i=0
	while ls /sys/fs/pstore/dmesg-* >/dev/null 2>&1 && [ $i -lt 180 ]; do sleep 1; i=$((i+1)); done
	echo "corepipe-test: pstore after $i s: [$(ls /sys/fs/pstore | tr '\n' ' ')]"
	poweroff -f
fi
echo "corepipe-test: first boot"
sleep 2
insmod /m/netconsole.ko netconsole="$(arg target)"
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
`

// TestQemuKernelPanicPstore panics Debian's kernel in qemu with netconsole
// sending to "corepipe kpanic" and ramoops keeping the dump; after the
// reset the real agent, a static corepipe in the VM's initramfs, reads the
// dump from pstore and records it through the host's NATS and MinIO. The
// receiver names the node by its address, the agent by its hostname:
// still one crash, the netconsole capture's, with the pstore log stored
// under the same crash ID, and the pstore record removed once durable.
func TestQemuKernelPanicPstore(t *testing.T) {
	qemu, kdir := qemuKernel(t, "netconsole.ko", "configfs.ko", "e1000.ko", "ramoops.ko", "reed_solomon.ko")
	dir := t.TempDir()
	start := time.Now()
	bin := filepath.Join(dir, "corepipe")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build a static corepipe: %v\n%s", err, out)
	}
	t.Logf("static corepipe built in %s", time.Since(start).Round(100*time.Millisecond))
	initrd := filepath.Join(dir, "initrd.cpio")
	writeInitramfs(t, initrd, kdir, qemuPstoreInit, []string{"netconsole.ko", "configfs.ko", "e1000.ko", "ramoops.ko", "reed_solomon.ko"},
		map[string]string{"corepipe": bin})

	minio := miniotest.Start(t)
	for _, kv := range minio.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	nats := natstest.StartEmbedded(t)
	blobURL := minio.URL("corepipe-kpanic")
	port := freeUDPPort(t)
	// The host's parts as the static binary's processes, the production
	// topology: receiver, analyzer, and the API's index.
	ctx, cancel := context.WithCancel(context.Background())
	var host []<-chan error
	out := &testkit.SyncBuffer{}
	run := func(args ...string) <-chan error {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 20 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		host = append(host, done)
		return done
	}
	t.Cleanup(func() {
		cancel()
		for _, done := range host {
			select {
			case err := <-done:
				// Canceled: it exited cleanly on SIGTERM.
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Error(err)
				}
			case <-time.After(30 * time.Second): // its error went to waitUI
			}
		}
	})
	run("kpanic", "--listen", fmt.Sprintf("udp://127.0.0.1:%d", port), "--blob", blobURL, "--nats", nats.ClientURL(), "--netconsole-quiet", "2s")
	run("analyzer", "--blob", blobURL, "--nats", nats.ClientURL())
	base := waitUI(t, out, run("api", "--blob", blobURL, "--nats", nats.ClientURL(), "--listen", "127.0.0.1:0", "--db", filepath.Join(dir, "index.db")))

	// The guest reaches the host only at 10.0.2.2, user networking's alias
	// of its loopback, where MinIO and NATS listen.
	_, natsPort, _ := net.SplitHostPort(strings.TrimPrefix(nats.ClientURL(), "nats://"))
	_, minioPort, _ := net.SplitHostPort(minio.Endpoint())
	user, pass := minio.Credentials()
	guestBlob := strings.Replace(blobURL, url.QueryEscape(minio.Endpoint()), url.QueryEscape("10.0.2.2:"+minioPort), 1)
	if guestBlob == blobURL {
		t.Fatalf("blob URL %s does not name %s", blobURL, minio.Endpoint())
	}
	args := []string{
		"console=ttyS0", "panic=1", "memmap=1M$" + ramoopsAddr,
		fmt.Sprintf("kp.target=+6665@10.0.2.15/eth0,%d@10.0.2.2/52:55:0a:00:02:02", port),
		"kp.nats=nats://10.0.2.2:" + natsPort, "kp.blob=" + guestBlob, "kp.user=" + user, "kp.pass=" + pass,
	}
	vmctx, vmcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer vmcancel()
	start = time.Now()
	vm := exec.CommandContext(vmctx, qemu, "-accel", "tcg", "-nographic", "-m", "1024",
		"-kernel", filepath.Join(kdir, "vmlinuz"), "-initrd", initrd, "-append", strings.Join(args, " "),
		"-netdev", "user,id=n0", "-device", "e1000,netdev=n0")
	serial := &testkit.SyncBuffer{}
	vm.Stdout, vm.Stderr = serial, serial
	// A second boot that finds pstore empty panics again, and again.
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for vmctx.Err() == nil {
			if strings.Count(serial.String(), "corepipe-test: first boot") > 1 {
				vmcancel()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	err := vm.Run()
	vmcancel()
	<-watched
	if err != nil {
		t.Fatalf("qemu: %v (a second first boot: pstore lost the dump)\n%s", err, tail(serial.String(), 6000))
	}
	t.Logf("two boots, panic, pstore recorded, power-off: %s", time.Since(start).Round(100*time.Millisecond))
	console := serial.String()
	if !strings.Contains(console, "Kernel panic - not syncing: sysrq triggered crash") || !strings.Contains(console, "corepipe-test: second boot") {
		t.Fatalf("the VM did not panic and boot again:\n%s", tail(console, 6000))
	}
	m := regexp.MustCompile(`previous boot's kernel panic recorded".* crash_id=([0-9A-Z]{26})`).FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("the agent in the VM recorded no panic from pstore:\n%s", tail(console, 6000))
	}
	pstoreID := m[1]
	record := regexp.MustCompile(`(?s)corepipe-test: record begin\n(.*)corepipe-test: record end`).FindStringSubmatch(strings.ReplaceAll(console, "\r\n", "\n"))
	if record == nil || !strings.HasPrefix(record[1], "Panic#1 Part1\n") || !strings.Contains(record[1], "Kernel panic - not syncing: sysrq triggered crash") {
		t.Fatalf("the record in pstore is not the panic's dump:\n%s", tail(console, 6000))
	}
	t.Logf("pstore record: %d bytes, recorded as %s", len(record[1]), pstoreID)
	if left := regexp.MustCompile(`corepipe-test: pstore after \d+ s: \[(.*)\]`).FindStringSubmatch(console); left == nil || strings.Contains(left[1], "dmesg-") {
		t.Errorf("pstore after the agent recorded its dump: %q", left)
	}

	// The pstore record was published after netconsole's; once the
	// analyzer had it too, had it been a crash of its own, the index
	// would show two.
	waitKernelReport(t, base, out)
	time.Sleep(5 * time.Second)
	reports := kernelCrashes(t, base)
	if len(reports) != 1 {
		t.Fatalf("%d kernel panics for one panic read from netconsole and pstore", len(reports))
	}
	r := reports[0]
	if r.ID != pstoreID || r.Source != corepipe.SourceNetconsole || r.Node != "127.0.0.1" {
		t.Errorf("crash %s from %s on %q; the agent recorded %s from pstore", r.ID, r.Source, r.Node, pstoreID)
	}
	store, err := blob.Open(ctx, blobURL)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := store.List(ctx, "cores/", func(key string) error { keys = append(keys, key); return nil }); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(keys, "\n")
	if !strings.Contains(joined, "/vm-node/"+pstoreID+"/console.txt") || !strings.Contains(joined, "/127.0.0.1/"+pstoreID+"/console.txt") {
		t.Errorf("console logs stored: want netconsole's and pstore's under %s:\n%s", pstoreID, joined)
	}
	if i := strings.Index(console, "corepipe-test: record end"); i >= 0 {
		t.Logf("second boot, after the record:\n%s", console[i:])
	}
}
