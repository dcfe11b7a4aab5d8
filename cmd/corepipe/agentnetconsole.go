package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"

	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe/netconsole/configfs"
)

// netconsoleTargetFlags point the node's kernel log at the receiver.
type netconsoleTargetFlags struct {
	to       string
	device   string
	mac      string
	configfs string
	proc     string
}

func netconsoleTargetFlagsOf(fset *pflag.FlagSet) *netconsoleTargetFlags {
	f := &netconsoleTargetFlags{}
	fset.StringVar(&f.to, "netconsole", "", "`udp://IP:PORT` of the netconsole receiver (corepipe kpanic): send this node's kernel log there, extended, through a configfs target (empty: none)")
	fset.StringVar(&f.device, "netconsole-device", "", "with --netconsole: the `interface` to send from (default: the one routing to the receiver)")
	fset.StringVar(&f.mac, "netconsole-mac", "", "with --netconsole: the next hop's `MAC` (default: from the ARP table; else broadcast)")
	fset.StringVar(&f.configfs, "netconsole-configfs", configfs.Root, "with --netconsole: where configfs is mounted")
	fset.StringVar(&f.proc, "netconsole-proc", "/proc", "with --netconsole: a `directory` whose net/route and net/arp are the host's (/proc/1 of the host's /proc, in a pod)")
	return f
}

// target is the configfs target the flags ask for on node.
func (f *netconsoleTargetFlags) target(node string) (configfs.Target, error) {
	u, err := url.Parse(f.to)
	if err != nil || u.Scheme != "udp" || u.Path != "" {
		return configfs.Target{}, fmt.Errorf("--netconsole %q: want udp://IP:PORT", f.to)
	}
	ap, err := netip.ParseAddrPort(u.Host)
	if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
		return configfs.Target{}, fmt.Errorf("--netconsole %q: want udp://IP:PORT with an IPv4 address (netconsole sends no name lookups)", f.to)
	}
	t := configfs.Target{Name: "corepipe", Device: f.device, RemoteIP: ap.Addr().String(), RemotePort: int(ap.Port()),
		RemoteMAC: f.mac, Extended: true}
	if node != "" {
		t.Userdata = map[string]string{"node": node}
	}
	if t.Device == "" || t.RemoteMAC == "" {
		dev, mac, err := configfs.NextHop(f.proc, t.RemoteIP)
		if err != nil {
			return configfs.Target{}, fmt.Errorf("--netconsole: %w (set --netconsole-device)", err)
		}
		if t.Device == "" {
			t.Device = dev
		}
		if t.RemoteMAC == "" {
			t.RemoteMAC = mac
		}
	}
	return t, nil
}

// setup makes or re-points the node's netconsole target. It never stops
// the agent: catching cores matters more than the kernel's log.
func (f *netconsoleTargetFlags) setup(log *slog.Logger, node string) {
	if f == nil || f.to == "" {
		return
	}
	t, err := f.target(node)
	if err == nil {
		var res configfs.Result
		res, err = configfs.Apply(f.configfs, t)
		for _, n := range res.Notes {
			log.Info("netconsole: " + n)
		}
		if err == nil {
			log.Info("netconsole sends this node's kernel log to the receiver", "to", f.to, "device", t.Device, "mac", t.RemoteMAC, "changed", res.Changed)
			return
		}
	}
	log.Warn("netconsole not set up: kernel panics of this node go unreported until it is", "err", err)
}
