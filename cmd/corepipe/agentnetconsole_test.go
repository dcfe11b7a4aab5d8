package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

func TestAgentNetconsoleTarget(t *testing.T) {
	root, proc := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(root, "netconsole"), 0o755)
	os.MkdirAll(filepath.Join(proc, "net"), 0o755)
	os.WriteFile(filepath.Join(proc, "net", "route"), []byte("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\nens5\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "net", "arp"), []byte("IP address HW type Flags HW address Mask Device\n10.0.0.1 0x1 0x2 02:00:00:00:00:01 * ens5\n"), 0o644)
	f := &netconsoleTargetFlags{to: "udp://10.9.0.5:6666", configfs: root, proc: proc}
	logs := &testkit.SyncBuffer{}
	f.setup(slog.New(slog.NewTextHandler(logs, nil)), "node-a")
	for name, want := range map[string]string{"dev_name": "ens5", "remote_ip": "10.9.0.5", "remote_port": "6666",
		"remote_mac": "02:00:00:00:00:01", "extended": "1", "enabled": "1"} {
		b, err := os.ReadFile(filepath.Join(root, "netconsole", "corepipe", name))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q (%v), want %q", name, b, err, want)
		}
	}
	if !strings.Contains(logs.String(), "netconsole sends this node's kernel log") || !strings.Contains(logs.String(), "no userdata") {
		t.Errorf("logs:\n%s", logs)
	}

	for _, bad := range []string{"10.9.0.5:6666", "udp://receiver.example:6666", "udp://[fd00::1]:6666", "udp://10.9.0.5"} {
		if _, err := (&netconsoleTargetFlags{to: bad, proc: proc}).target("n"); err == nil || !strings.HasPrefix(err.Error(), "--netconsole") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	// No module: a warning, and the agent goes on.
	logs = &testkit.SyncBuffer{}
	(&netconsoleTargetFlags{to: "udp://10.9.0.5:6666", configfs: t.TempDir(), proc: proc}).setup(slog.New(slog.NewTextHandler(logs, nil)), "n")
	if !strings.Contains(logs.String(), "netconsole not set up") || !strings.Contains(logs.String(), "modprobe netconsole") {
		t.Errorf("logs:\n%s", logs)
	}
}
