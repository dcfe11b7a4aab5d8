package agent

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/blobtest"
	"github.com/corepipe/corepipe/internal/testkit/netconsoletest"
	"github.com/corepipe/corepipe/netconsole"
)

// captured is what the receiver made of a real netconsole capture of the
// sysrq panic of Debian's 6.1 kernel in qemu, sent by 127.0.0.1.
func captured(t *testing.T, name string) *netconsole.Capture {
	return netconsoletest.Replay(t, "../../netconsole/testdata/qemu-sysrq-"+name+".jsonl")
}

// pstoreParts cuts log as the kernel dumps it to pstore at a panic: its
// newest end up to the panic notifiers' last line ("Kernel Offset"),
// split into parts of partSize from the newest, each with its header, as
// ramoops keeps them with its ECC notice; only the newest parts parts.
func pstoreParts(t *testing.T, log []byte, partSize, parts int) [][]byte {
	t.Helper()
	end := bytes.Index(log, []byte("Kernel Offset:"))
	if end < 0 {
		t.Fatal("no Kernel Offset line")
	}
	end += bytes.IndexByte(log[end:], '\n') + 1
	log = log[:end]
	var out [][]byte
	for p := 1; p <= parts && len(log) > 0; p++ {
		start := max(0, len(log)-partSize)
		if i := bytes.IndexByte(log[start:], '\n'); start > 0 && i >= 0 {
			start += i + 1 // the kernel dumps whole records
		}
		part := append([]byte("Panic#1 Part"+string(rune('0'+p))+"\n"), log[start:]...)
		out = append(out, append(part, "\nECC: No errors detected\n"...))
		log = log[:start]
	}
	return out
}

func writeFiles(t *testing.T, dir string, files map[string][]byte, at time.Time) {
	t.Helper()
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
}

func lastBoot(r *rig, b LastBoot) *LastBoot {
	b.Node = "vm-node"
	b.Recorder = &netconsole.Recorder{Blobs: r.blobs, Queue: r.queue}
	return &b
}

// The same panic captured over netconsole (extended and plain targets,
// named by the sender's address) and read back from pstore after the
// reboot (by the agent, under its node's name, two parts with the oldest
// lines and the BUG context missing) is one crash: one ID, one message on
// the queue. The pstore record is removed once recorded.
func TestLastBootPstoreIsTheNetconsoleCrash(t *testing.T) {
	r := newRig(t, nil)
	ext, plain := captured(t, "ext"), captured(t, "plain")
	rec := &netconsole.Recorder{Blobs: r.blobs, Queue: r.queue}
	ctx := context.Background()
	want, err := rec.Record(ctx, ext)
	if err != nil {
		t.Fatal(err)
	}
	if got := netconsole.Crash(plain); got.ID != want.ID {
		t.Fatalf("plain capture %s, extended %s: one panic, two IDs", got.ID, want.ID)
	}

	dir := t.TempDir()
	parts := pstoreParts(t, ext.Log, 1500, 2)
	at := time.Date(2026, 12, 2, 6, 34, 7, 0, time.UTC)
	writeFiles(t, dir, map[string][]byte{"dmesg-ramoops-0": parts[0], "dmesg-ramoops-1": parts[1], "console-ramoops-0": []byte("boot log\n")}, at)
	b := lastBoot(r, LastBoot{Pstore: dir})
	logs := b.Find()
	if len(logs) != 1 || len(logs[0].Files) != 2 || logs[0].Source != corepipe.SourcePstore || !logs[0].At.Equal(at) {
		t.Fatalf("found %+v", logs)
	}
	if bytes.Contains(logs[0].Log, []byte("ECC:")) || bytes.Contains(logs[0].Log, []byte("Part1")) {
		t.Errorf("notices or headers left in the joined log:\n%s", logs[0].Log)
	}
	if c := (&netconsole.Capture{Source: corepipe.SourcePstore, Node: "vm-node", Log: logs[0].Log}); netconsole.Crash(c).ID != want.ID {
		t.Fatalf("pstore's crash %s, netconsole's %s", netconsole.Crash(c).ID, want.ID)
	}
	if err := b.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := r.queued(t); len(ids) != 1 || ids[0] != want.ID {
		t.Fatalf("queued %v, want only %s", ids, want.ID)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "console-ramoops-0" {
		t.Errorf("left in pstore: %v, want only the console record", left)
	}

	// A dump of one part (from the panic line on, the BUG context and
	// the boot lost), and another boot's panic that differs in its
	// timestamp's last digit.
	one := t.TempDir()
	part := pstoreParts(t, ext.Log, 3000, 1)[0]
	if !bytes.Contains(part, []byte("Kernel panic")) || bytes.Contains(part, []byte("Linux version")) {
		t.Fatalf("want a part from just before the panic line:\n%s", part)
	}
	writeFiles(t, one, map[string][]byte{"dmesg-ramoops-0": part}, at)
	if l := lastBoot(r, LastBoot{Pstore: one}).Find(); len(l) != 1 ||
		netconsole.Crash(&netconsole.Capture{Log: l[0].Log}).ID != want.ID {
		t.Errorf("the newest part alone is another crash: %+v", l)
	}
	other := bytes.Replace(part, []byte("6.199701] Kernel panic"), []byte("6.199702] Kernel panic"), 1)
	if netconsole.Crash(&netconsole.Capture{Log: other}).ID == want.ID {
		t.Error("a panic a microsecond later has the same ID")
	}
}

// The record ramoops kept across a real qemu reset reads back as its
// log without the header and the ECC notice, and is the crash its raw
// text would be.
func TestLastBootRealRamoopsRecord(t *testing.T) {
	raw, err := os.ReadFile("../../kernlog/testdata/qemu-sysrq-pstore.txt")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"dmesg-ramoops-0": raw}, time.Now())
	logs := (&LastBoot{Pstore: dir}).Find()
	if len(logs) != 1 {
		t.Fatalf("found %d logs", len(logs))
	}
	l := logs[0].Log
	if bytes.Contains(l, []byte("ECC:")) || bytes.HasPrefix(l, []byte("Panic#")) || !bytes.HasSuffix(l, []byte("0xffffffffbfffffff)\n")) {
		t.Errorf("joined log starts %q, ends %q", l[:20], l[len(l)-40:])
	}
	if got, want := netconsole.Crash(&netconsole.Capture{Log: l}).ID, netconsole.Crash(&netconsole.Capture{Log: raw}).ID; got != want {
		t.Errorf("read back %s, raw %s", got, want)
	}
}

// systemd-pstore's archive, as it lays it out: ramoops records moved to
// its top, efi records under <record id>/<count>/ with the parts joined in
// dmesg.txt. Each panic is recorded once — the joined file is not a second
// one — and an agent restarted over the archive, which stays, records
// nothing again.
func TestLastBootSystemdPstore(t *testing.T) {
	r := newRig(t, nil)
	ext := captured(t, "ext")
	parts := pstoreParts(t, ext.Log, 1200, 2)
	efi := pstoreParts(t, bytes.Replace(ext.Log, []byte("6.199701]"), []byte("9.100000]"), 1), 1200, 2)
	dir := t.TempDir()
	at := time.Date(2026, 12, 1, 22, 10, 0, 0, time.UTC)
	writeFiles(t, dir, map[string][]byte{
		"dmesg-ramoops-0": parts[0], "dmesg-ramoops-1": parts[1],
		"1733123400/001/dmesg-efi-173312340001001": efi[0],
		"1733123400/001/dmesg-efi-173312340002001": efi[1],
		"1733123400/001/dmesg.txt":                 append(append([]byte{}, efi[1]...), efi[0]...),
	}, at)
	for range 2 {
		b := lastBoot(r, LastBoot{SystemdPstore: dir})
		if logs := b.Find(); len(logs) != 2 {
			t.Fatalf("found %d logs, want the ramoops and the efi panic", len(logs))
		}
		if err := b.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ids := r.queued(t)
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("queued %v, want two crashes once each", ids)
	}
	if n, _ := os.ReadDir(dir); len(n) != 3 {
		t.Errorf("the archive changed: %v", n)
	}
	// Where the parts are gone, dmesg.txt is the log.
	only := t.TempDir()
	writeFiles(t, only, map[string][]byte{"1733123400/001/dmesg.txt": append(append([]byte{}, efi[1]...), efi[0]...)}, at)
	b := lastBoot(r, LastBoot{SystemdPstore: only})
	if logs := b.Find(); len(logs) != 1 || netconsole.Crash(&netconsole.Capture{Log: logs[0].Log}).ID != ids[1] && netconsole.Crash(&netconsole.Capture{Log: logs[0].Log}).ID != ids[0] {
		t.Errorf("dmesg.txt alone: %+v", logs)
	}
}

// kdump's directories: kdump-tools's <stamp>/dmesg.<stamp> beside the dump,
// and kexec-tools's <host>-<date>/vmcore-dmesg.txt.
func TestLastBootKdump(t *testing.T) {
	r := newRig(t, nil)
	serial, err := os.ReadFile("../../kernlog/testdata/qemu-sysrq-serial.log")
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Replace(serial, []byte("Kernel panic - not syncing"), []byte("Kernel panic - not syncing: Fatal exception\n[    8.000000] x"), 1)
	dir := t.TempDir()
	at := time.Date(2026, 12, 2, 6, 34, 0, 0, time.UTC)
	writeFiles(t, dir, map[string][]byte{
		"202612020634/dmesg.202612020634":                serial,
		"202612020634/dump.202612020634":                 []byte("KDUMP   \x00not a log"),
		"127.0.0.1-2026-12-02-06:40:11/vmcore-dmesg.txt": other,
		"kexec_cmd": []byte("/sbin/kexec -p ...\n"),
	}, at)
	b := lastBoot(r, LastBoot{Kdump: dir})
	logs := b.Find()
	if len(logs) != 2 {
		t.Fatalf("found %d logs", len(logs))
	}
	for _, l := range logs {
		if l.Source != corepipe.SourceKdump || !strings.Contains(l.Files[0], "dmesg") {
			t.Errorf("log %s from %v", l.Source, l.Files)
		}
	}
	if err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := r.queued(t)
	if len(ids) != 2 {
		t.Fatalf("queued %v", ids)
	}
	var c corepipe.Crash
	for _, id := range ids {
		if err := r.blobs.List(context.Background(), "cores/", func(key string) error {
			if strings.HasSuffix(key, id+"/manifest.json") {
				return json.Unmarshal(blobtest.Read(t, r.blobs, key), &c)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if c.ID != id || c.Node != "vm-node" || c.Console == nil || c.Console.Source != corepipe.SourceKdump || !c.CapturedAt.Equal(at) {
			t.Errorf("manifest %+v console %+v", c, c.Console)
		}
	}
	if n, _ := os.ReadDir(filepath.Join(dir, "202612020634")); len(n) != 2 {
		t.Error("kdump's files were touched")
	}
}

// A record claiming 2 GiB is read for its newest MiB, and one the kernel
// left compressed (.enc.z, raw deflate) is decompressed.
func TestLastBootBoundedAndCompressed(t *testing.T) {
	r := newRig(t, nil)
	parts := pstoreParts(t, captured(t, "ext").Log, 4000, 1)
	dir := t.TempDir()
	big := filepath.Join(dir, "dmesg-efi-173312340001001")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(parts[0], 2<<30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, flate.BestCompression)
	zw.Write(bytes.Replace(parts[0], []byte("6.199701]"), []byte("7.000001]"), 1))
	zw.Close()
	writeFiles(t, dir, map[string][]byte{"dmesg-ramoops-0.enc.z": z.Bytes(), "dmesg-ramoops-1.enc.z": []byte("\xffnot deflate")}, time.Now())
	b := lastBoot(r, LastBoot{Pstore: dir})
	logs := b.Find()
	if len(logs) != 2 {
		t.Fatalf("found %d logs, want the big and the compressed one (the corrupt one costing only itself)", len(logs))
	}
	for _, l := range logs {
		if len(l.Log) > MaxPanicLog {
			t.Errorf("%s: %d bytes kept", l.Files[0], len(l.Log))
		}
	}
}

// An archive that keeps every dump costs the newest few logs, not one per
// dump: the older were recorded by earlier starts.
func TestLastBootKeepsTheNewest(t *testing.T) {
	serial, err := os.ReadFile("../../kernlog/testdata/qemu-sysrq-serial.log")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range maxLastBootLogs + 4 {
		stamp := at.Add(time.Duration(i) * time.Hour).Format("200601021504")
		writeFiles(t, dir, map[string][]byte{stamp + "/dmesg." + stamp: serial}, at.Add(time.Duration(i)*time.Hour))
	}
	logs := (&LastBoot{Kdump: dir}).Find()
	if len(logs) != maxLastBootLogs || !logs[0].At.Equal(at.Add(4*time.Hour)) || !logs[len(logs)-1].At.Equal(at.Add(time.Duration(maxLastBootLogs+3)*time.Hour)) {
		t.Fatalf("%d logs, from %v to %v", len(logs), logs[0].At, logs[len(logs)-1].At)
	}
}

// Whatever a record holds, plain or claiming to be compressed, reading it
// back neither fails the others nor keeps more than MaxPanicLog.
func FuzzLastBootPstore(f *testing.F) {
	if raw, err := os.ReadFile("../../kernlog/testdata/qemu-sysrq-pstore.txt"); err == nil {
		f.Add(raw)
	}
	f.Add([]byte("Panic#1 Part2\n[ 1.0] Kernel panic - not syncing: x\n\nECC: No errors detected\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		at := time.Unix(1764657240, 0)
		writeFiles(t, dir, map[string][]byte{"dmesg-ramoops-0": data, "dmesg-ramoops-1": data, "dmesg-efi-1.enc.z": data}, at)
		for _, l := range (&LastBoot{Pstore: dir}).Find() {
			if len(l.Log) > MaxPanicLog || len(l.Files) == 0 {
				t.Fatalf("%d bytes from %v", len(l.Log), l.Files)
			}
		}
	})
}
