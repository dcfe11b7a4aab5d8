// Package configfs points a node's kernel log at the netconsole receiver:
// a dynamic netconsole target made through the kernel's configfs
// (Documentation/networking/netconsole.rst), under a root that tests
// replace with a directory of their own.
package configfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Root is where configfs is mounted.
const Root = "/sys/kernel/config"

// Target is one dynamic netconsole target.
type Target struct {
	// Name is the target's directory under <root>/netconsole.
	Name string
	// Device is the interface to send from (dev_name).
	Device string
	// LocalIP is the address to send from; empty: the device's own.
	LocalIP string
	// RemoteIP and RemotePort are the receiver's.
	RemoteIP   string
	RemotePort int
	// RemoteMAC is the next hop's MAC address (the receiver's on its own
	// link, else the gateway's); empty: broadcast, which no router passes.
	RemoteMAC string
	// Extended sends the extended format: sequence numbers, fragments and
	// no 1000-byte cut.
	Extended bool
	// Userdata are KEY=value lines appended to every message (Linux
	// 6.9+), such as node=<name>, so the receiver names the node without
	// guessing from the address.
	Userdata map[string]string
}

// Result says what Apply did.
type Result struct {
	// Changed is set when the target was made or re-pointed; unset, it
	// already sent where it should.
	Changed bool
	// Notes say what the kernel could not do, one sentence each.
	Notes []string
}

// ErrNoNetconsole is returned when the netconsole module is not loaded.
var ErrNoNetconsole = errors.New("netconsole is not loaded (modprobe netconsole; the agent needs the host's /lib/modules and CAP_SYS_MODULE, or the module loaded at boot)")

// Apply makes target t under configfs root, or re-points it, and enables
// it. A target that already sends where t says is left alone: the kernel
// refuses changes to an enabled target, and disabling it even briefly
// loses what the kernel prints meanwhile.
func Apply(root string, t Target) (Result, error) {
	var res Result
	if err := t.validate(); err != nil {
		return res, err
	}
	base := filepath.Join(root, "netconsole")
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		return res, ErrNoNetconsole
	}
	dir := filepath.Join(base, t.Name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return res, fmt.Errorf("netconsole target %s: %w", t.Name, err)
	}
	want := t.attributes()
	enabled := read(dir, "enabled") == "1"
	if enabled && same(dir, want) && userdataSet(dir, t.Userdata) {
		return res, nil
	}
	res.Changed = true
	if enabled {
		if err := write(dir, "enabled", "0"); err != nil {
			return res, err
		}
	}
	for _, name := range sortedKeys(want) {
		if err := write(dir, name, want[name]); err != nil {
			return res, err
		}
	}
	if len(t.Userdata) > 0 {
		ud := filepath.Join(dir, "userdata")
		if fi, err := os.Stat(ud); err != nil || !fi.IsDir() {
			res.Notes = append(res.Notes, "this kernel's netconsole has no userdata (Linux 6.9+): the receiver names the node by its address")
		} else {
			for _, k := range sortedKeys(t.Userdata) {
				if err := os.Mkdir(filepath.Join(ud, k), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
					return res, fmt.Errorf("netconsole userdata %s: %w", k, err)
				}
				if err := write(filepath.Join(ud, k), "value", t.Userdata[k]); err != nil {
					return res, err
				}
			}
		}
	}
	return res, write(dir, "enabled", "1")
}

func (t Target) validate() error {
	switch {
	case t.Name == "" || strings.ContainsAny(t.Name, "/\x00") || t.Name == "." || t.Name == "..":
		return fmt.Errorf("netconsole target name %q: want a plain directory name", t.Name)
	case t.Device == "" || strings.ContainsAny(t.Device, "/\n\x00 "):
		return fmt.Errorf("netconsole device %q: want an interface name", t.Device)
	case t.RemoteIP == "" || strings.ContainsAny(t.RemoteIP, "\n\x00 "):
		return fmt.Errorf("netconsole remote address %q", t.RemoteIP)
	case t.RemotePort <= 0 || t.RemotePort > 65535:
		return fmt.Errorf("netconsole remote port %d: want 1-65535", t.RemotePort)
	}
	for k, v := range t.Userdata {
		// The kernel bounds a key's name to 53 bytes and a value to 200.
		if k == "" || len(k) > 53 || strings.ContainsAny(k, "/=\n\x00 ") || len(v) > 200 || strings.ContainsAny(v, "\n\x00") {
			return fmt.Errorf("netconsole userdata %q=%q: keys of at most 53 bytes without '/', '=' or spaces, values of at most 200 on one line", k, v)
		}
	}
	return nil
}

// attributes are the target's files and what they should hold, as the
// kernel prints them back.
func (t Target) attributes() map[string]string {
	a := map[string]string{
		"dev_name":    t.Device,
		"remote_ip":   t.RemoteIP,
		"remote_port": fmt.Sprint(t.RemotePort),
		"extended":    "0",
	}
	if t.Extended {
		a["extended"] = "1"
	}
	if t.LocalIP != "" {
		a["local_ip"] = t.LocalIP
	}
	if t.RemoteMAC != "" {
		a["remote_mac"] = strings.ToLower(t.RemoteMAC)
	}
	return a
}

func same(dir string, want map[string]string) bool {
	for name, v := range want {
		if read(dir, name) != v {
			return false
		}
	}
	return true
}

func userdataSet(dir string, ud map[string]string) bool {
	if _, err := os.Stat(filepath.Join(dir, "userdata")); err != nil {
		return true // nothing the kernel can hold
	}
	for k, v := range ud {
		if read(filepath.Join(dir, "userdata", k), "value") != v {
			return false
		}
	}
	return true
}

// read returns attribute name of dir, trimmed; "" when unreadable.
func read(dir, name string) string {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 256)
	n, _ := f.Read(b)
	return strings.TrimSpace(string(b[:n]))
}

// write sets attribute name of dir to v, as one write, which is how
// configfs takes it.
func write(dir, name, v string) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("netconsole %s: %w", name, err)
	}
	_, err = f.WriteString(v + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("netconsole %s = %q: %w", name, v, err)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
