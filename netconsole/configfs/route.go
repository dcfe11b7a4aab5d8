package configfs

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// NextHop finds, in the IPv4 routing table under procRoot (/proc), the
// interface that reaches ip and the next hop's MAC address from the ARP
// table: the gateway's, or ip's own when it is on the link. The MAC is ""
// when the ARP table does not hold it (nothing was sent there lately).
func NextHop(procRoot, ip string) (dev, mac string, err error) {
	dst, err := netip.ParseAddr(ip)
	if err != nil || !dst.Is4() {
		return "", "", fmt.Errorf("netconsole remote %q: want an IPv4 address", ip)
	}
	f, err := os.Open(filepath.Join(procRoot, "net", "route"))
	if err != nil {
		return "", "", fmt.Errorf("routing table: %w", err)
	}
	defer f.Close()
	best, hop := -1, netip.Addr{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 {
			continue
		}
		d, ok1 := le32(fs[1])
		gw, ok2 := le32(fs[2])
		mask, ok3 := le32(fs[7])
		if !ok1 || !ok2 || !ok3 {
			continue
		}
		bits := 0
		for m := mask.As4(); bits < 32 && m[bits/8]&(0x80>>(bits%8)) != 0; bits++ {
		}
		p, err := d.Prefix(bits)
		if err != nil || !p.Contains(dst) || bits <= best {
			continue
		}
		best, dev, hop = bits, fs[0], gw
	}
	if best < 0 {
		return "", "", fmt.Errorf("no route to %s", ip)
	}
	if hop.IsUnspecified() {
		hop = dst
	}
	return dev, arpMAC(procRoot, hop.String(), dev), nil
}

// le32 parses a /proc/net/route address: 8 hex digits, little-endian.
func le32(s string) (netip.Addr, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 4 {
		return netip.Addr{}, false
	}
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], binary.LittleEndian.Uint32(b))
	return netip.AddrFrom4(a), true
}

// arpMAC is ip's MAC on dev in the ARP table, "" when unknown.
func arpMAC(procRoot, ip, dev string) string {
	f, err := os.Open(filepath.Join(procRoot, "net", "arp"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	for sc.Scan() {
		// IP address HW type Flags HW address Mask Device
		fs := strings.Fields(sc.Text())
		if len(fs) >= 6 && fs[0] == ip && fs[5] == dev && fs[3] != "00:00:00:00:00:00" {
			return fs[3]
		}
	}
	return ""
}
