package collector

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
)

// maxCgroupFile bounds each read of a cgroup file; the longest one read,
// memory.events, is a few hundred bytes.
const maxCgroupFile = 4 << 10

// maxCgroupDepth is how many cgroups, the process's and its ancestors, are
// searched for limits. A process can nest delegated cgroups at will; real
// hierarchies are a handful of levels deep.
const maxCgroupDepth = 64

// gatherCgroupLimits records the limits of the cgroup v2 path c.Cgroup,
// read under cgroupRoot. cgroup v1 hosts are not read: their limits live in
// one hierarchy per controller and Kubernetes has moved off them.
func gatherCgroupLimits(c *corepipe.Crash, cgroupRoot string) {
	switch {
	case c.Cgroup == "":
		return
	case !strings.HasPrefix(c.Cgroup, "/"):
		c.Notes = append(c.Notes, "cgroup v1: container limits not read")
		return
	}
	l, err := readCgroupLimits(cgroupRoot, c.Cgroup)
	if err != nil {
		c.Notes = append(c.Notes, err.Error())
	}
	c.CgroupLimits = l
}

// readCgroupLimits reads the limits of the cgroup v2 path cg (as
// /proc/<pid>/cgroup names it) under cgroupRoot: the tightest memory.max,
// pids.max and cpu.max of the cgroup and its ancestors, and the cgroup's own
// usage. It returns nil when no file was found, and whatever it read along
// with an error for the files it could not parse.
//
// The path is the crashing process's to shape (it may create cgroups below
// a delegated one), so only a clean path inside the hierarchy is read, and
// every file is opened through an os.Root without following a final
// symlink.
func readCgroupLimits(cgroupRoot, cg string) (*corepipe.CgroupLimits, error) {
	rel, err := cgroupRel(cg)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(cgroupRoot)
	if err != nil {
		return nil, fmt.Errorf("cgroup limits not read: %w", err)
	}
	defer root.Close()

	var l corepipe.CgroupLimits
	var errs []error
	found := false
	// read returns the trimmed content of dir/name, "" when it is absent.
	read := func(dir, name string) string {
		b, err := readCgroupFile(root, path.Join(dir, name))
		switch {
		case err == nil:
			found = true
			return b
		case !errors.Is(err, fs.ErrNotExist):
			errs = append(errs, err)
		}
		return ""
	}
	// num parses a count or byte size of dir/name; "max" is 0, no limit.
	num := func(dir, name string) int64 {
		s := read(dir, name)
		if s == "" || s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("cgroup %s/%s: %q is not a count", cg, name, corepipe.Clip(s, 40)))
			return 0
		}
		return n
	}

	l.MemoryCurrent = num(rel, "memory.current")
	l.MemoryPeak = num(rel, "memory.peak")
	l.PidsCurrent = num(rel, "pids.current")
	if s := read(rel, "memory.events"); s != "" {
		l.OOMKills, err = parseOOMKills(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("cgroup %s/memory.events: %w", cg, err))
		}
	}
	dir := rel
	for range maxCgroupDepth {
		l.MemoryMax = tighter(l.MemoryMax, num(dir, "memory.max"))
		l.PidsMax = tighter(l.PidsMax, num(dir, "pids.max"))
		if s := read(dir, "cpu.max"); s != "" {
			q, p, err := parseCPUMax(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("cgroup %s/cpu.max: %w", dir, err))
			} else if q > 0 && (l.CPUQuotaUS == 0 || float64(q)/float64(p) < float64(l.CPUQuotaUS)/float64(l.CPUPeriodUS)) {
				l.CPUQuotaUS, l.CPUPeriodUS = q, p
			}
		}
		if dir == "." {
			break
		}
		dir = path.Dir(dir)
	}
	if !found {
		return nil, errors.Join(errs...)
	}
	return &l, errors.Join(errs...)
}

// cgroupRel turns an absolute cgroup path into one relative to the
// hierarchy's root. A path that climbs out (the kernel writes "/../…" for a
// cgroup outside the reader's namespace) or is not clean is refused rather
// than resolved: cleaning "/../x" would read some other cgroup's limits.
func cgroupRel(cg string) (string, error) {
	rel, ok := strings.CutPrefix(cg, "/")
	if !ok {
		return "", fmt.Errorf("cgroup limits not read: %q is not an absolute cgroup v2 path", corepipe.Clip(cg, 80))
	}
	if rel == "" {
		return ".", nil
	}
	for e := range strings.SplitSeq(rel, "/") {
		if e == "" || e == "." || e == ".." || strings.ContainsRune(e, 0) {
			return "", fmt.Errorf("cgroup limits not read: path %q is not a clean path inside the hierarchy", corepipe.Clip(cg, 80))
		}
	}
	return rel, nil
}

// readCgroupFile returns at most maxCgroupFile bytes of name, trimmed.
func readCgroupFile(root *os.Root, name string) (string, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCgroupFile))
	if err != nil {
		return "", fmt.Errorf("read cgroup %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// parseOOMKills finds "oom_kill N" in memory.events.
func parseOOMKills(s string) (int64, error) {
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("oom_kill %q is not a count", corepipe.Clip(v, 40))
			}
			return n, nil
		}
	}
	return 0, nil
}

// parseCPUMax reads cpu.max, "<quota|max> <period>"; quota 0 for "max".
func parseCPUMax(s string) (quota, period int64, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%q is not \"<quota> <period>\"", corepipe.Clip(s, 40))
	}
	period, err = strconv.ParseInt(f[1], 10, 64)
	if err != nil || period <= 0 {
		return 0, 0, fmt.Errorf("period %q is not a positive number", corepipe.Clip(f[1], 20))
	}
	if f[0] == "max" {
		return 0, period, nil
	}
	quota, err = strconv.ParseInt(f[0], 10, 64)
	if err != nil || quota <= 0 {
		return 0, 0, fmt.Errorf("quota %q is not a positive number", corepipe.Clip(f[0], 20))
	}
	return quota, period, nil
}

// tighter returns the smaller of two limits where 0 is none.
func tighter(a, b int64) int64 {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}
