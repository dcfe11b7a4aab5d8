package configfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kernel is a configfs root with the netconsole module loaded; userdata
// says whether its targets have a userdata directory (Linux 6.9+). The
// real kernel makes a new target's files and userdata itself; here the
// test makes the directory when Apply makes the target.
func kernel(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "netconsole"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func attr(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "netconsole", "corepipe", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func target() Target {
	return Target{Name: "corepipe", Device: "eth0", RemoteIP: "10.0.0.9", RemotePort: 6666,
		RemoteMAC: "52:55:0A:00:02:02", Extended: true, Userdata: map[string]string{"node": "node-a"}}
}

func TestApplyMakesTarget(t *testing.T) {
	root := kernel(t)
	res, err := Apply(root, target())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "no userdata") {
		t.Errorf("result %+v", res)
	}
	for name, want := range map[string]string{"dev_name": "eth0\n", "remote_ip": "10.0.0.9\n", "remote_port": "6666\n",
		"remote_mac": "52:55:0a:00:02:02\n", "extended": "1\n", "enabled": "1\n"} {
		if got := attr(t, root, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// Applied again, it is left alone: nothing is disabled.
	if res, err := Apply(root, target()); err != nil || res.Changed {
		t.Errorf("again: %+v %v", res, err)
	}
}

func TestApplyRepoints(t *testing.T) {
	root := kernel(t)
	if err := os.MkdirAll(filepath.Join(root, "netconsole", "corepipe", "userdata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(root, target()); err != nil {
		t.Fatal(err)
	}
	if got := attr(t, root, "userdata/node/value"); got != "node-a\n" {
		t.Errorf("userdata node = %q", got)
	}
	// The receiver moved.
	moved := target()
	moved.RemoteIP = "10.0.0.10"
	res, err := Apply(root, moved)
	if err != nil || !res.Changed || len(res.Notes) != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	if attr(t, root, "remote_ip") != "10.0.0.10\n" || attr(t, root, "enabled") != "1\n" {
		t.Errorf("remote_ip %q enabled %q", attr(t, root, "remote_ip"), attr(t, root, "enabled"))
	}
}

func TestApplyRefuses(t *testing.T) {
	if _, err := Apply(t.TempDir(), target()); !errors.Is(err, ErrNoNetconsole) {
		t.Errorf("no module: %v", err)
	}
	root := kernel(t)
	for name, change := range map[string]func(*Target){
		"name with a slash": func(t *Target) { t.Name = "../x" },
		"no device":         func(t *Target) { t.Device = "" },
		"bad port":          func(t *Target) { t.RemotePort = 70000 },
		"newline in value":  func(t *Target) { t.Userdata["node"] = "a\nb" },
		"key with =":        func(t *Target) { t.Userdata["a=b"] = "c" },
	} {
		tg := target()
		change(&tg)
		if _, err := Apply(root, tg); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "x")); err == nil {
		t.Error("a target made outside netconsole/")
	}
	// A link planted where an attribute goes is not followed.
	dir := filepath.Join(root, "netconsole", "corepipe")
	os.MkdirAll(dir, 0o755)
	outside := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(outside, []byte("keep\n"), 0o644)
	if err := os.Symlink(outside, filepath.Join(dir, "dev_name")); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(root, target()); err == nil {
		t.Error("wrote through a symlink")
	}
	if b, _ := os.ReadFile(outside); string(b) != "keep\n" {
		t.Errorf("the link's target became %q", b)
	}
}

func TestNextHop(t *testing.T) {
	proc := t.TempDir()
	os.MkdirAll(filepath.Join(proc, "net"), 0o755)
	// A node's tables as the kernel prints them: default via 10.0.0.1 on
	// eth0, 10.0.0.0/24 on eth0, 172.17.0.0/16 on docker0.
	os.WriteFile(filepath.Join(proc, "net", "route"), []byte(`Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	0100000A	0003	0	0	100	00000000	0	0	0
eth0	0000000A	00000000	0001	0	0	100	00FFFFFF	0	0	0
docker0	000011AC	00000000	0001	0	0	0	0000FFFF	0	0	0
`), 0o644)
	os.WriteFile(filepath.Join(proc, "net", "arp"), []byte(`IP address       HW type     Flags       HW address            Mask     Device
10.0.0.1         0x1         0x2         52:54:00:12:34:56     *        eth0
10.0.0.9         0x1         0x2         52:54:00:ab:cd:ef     *        eth0
`), 0o644)
	for _, tc := range []struct{ ip, dev, mac string }{
		{"10.0.0.9", "eth0", "52:54:00:ab:cd:ef"},    // on the link
		{"192.168.7.7", "eth0", "52:54:00:12:34:56"}, // through the gateway
		{"172.17.0.5", "docker0", ""},                // not in the ARP table
	} {
		dev, mac, err := NextHop(proc, tc.ip)
		if err != nil || dev != tc.dev || mac != tc.mac {
			t.Errorf("%s: %q %q %v, want %q %q", tc.ip, dev, mac, err, tc.dev, tc.mac)
		}
	}
	if _, _, err := NextHop(proc, "fd00::1"); err == nil {
		t.Error("IPv6 accepted")
	}
}
