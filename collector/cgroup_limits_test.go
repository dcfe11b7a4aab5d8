package collector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
)

// fixtureCgroup is the cgroup of the fixture process 4242 under
// testdata/cgroup.
const fixtureCgroup = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + testPodSD + ".slice/cri-containerd-" + idA + ".scope"

// fixtureCgroupLimits is what testdata/cgroup says of fixtureCgroup: the
// container's own memory.max is tighter than the pod's, the pod's pids.max
// and cpu.max bind a container that sets "max".
var fixtureCgroupLimits = corepipe.CgroupLimits{
	MemoryMax: 512 << 20, MemoryCurrent: 530579456, MemoryPeak: 536739840, OOMKills: 2,
	PidsMax: 100, PidsCurrent: 97, CPUQuotaUS: 150000, CPUPeriodUS: 100000,
}

// writeTree creates files (path → content) under a new directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestReadCgroupLimits(t *testing.T) {
	l, err := readCgroupLimits("testdata/cgroup", fixtureCgroup)
	if err != nil {
		t.Fatal(err)
	}
	if l == nil || *l != fixtureCgroupLimits {
		t.Errorf("limits = %+v, want %+v", l, fixtureCgroupLimits)
	}

	for _, tc := range []struct {
		name    string
		files   map[string]string
		cg      string
		want    *corepipe.CgroupLimits
		wantErr string
	}{{
		name:  "max everywhere is no limit",
		files: map[string]string{"a/memory.max": "max\n", "a/pids.max": "max\n", "a/cpu.max": "max 100000\n", "a/memory.current": "4096\n"},
		cg:    "/a",
		want:  &corepipe.CgroupLimits{MemoryCurrent: 4096},
	}, {
		name:  "missing files are absent, memory.peak before Linux 5.19",
		files: map[string]string{"a/b/memory.max": "1048576\n", "a/b/memory.events": "low 0\nmax 3\n"},
		cg:    "/a/b",
		want:  &corepipe.CgroupLimits{MemoryMax: 1 << 20},
	}, {
		name:  "an ancestor's tighter limit binds",
		files: map[string]string{"a/memory.max": "1000\n", "a/cpu.max": "50000 100000\n", "a/b/memory.max": "2000\n", "a/b/cpu.max": "100000 50000\n"},
		cg:    "/a/b",
		want:  &corepipe.CgroupLimits{MemoryMax: 1000, CPUQuotaUS: 50000, CPUPeriodUS: 100000},
	}, {
		name:  "no cgroup files at all",
		files: map[string]string{"a/cgroup.procs": "1\n"},
		cg:    "/a",
	}, {
		name:  "root cgroup",
		files: map[string]string{"memory.current": "1\n"},
		cg:    "/",
		want:  &corepipe.CgroupLimits{MemoryCurrent: 1},
	}, {
		name:    "garbage is an error, the rest is kept",
		files:   map[string]string{"a/memory.max": "lots\n", "a/cpu.max": "1\n", "a/pids.max": "-3\n", "a/pids.current": "5\n"},
		cg:      "/a",
		want:    &corepipe.CgroupLimits{PidsCurrent: 5},
		wantErr: `"lots" is not a count`,
	}, {
		name:    "climbing out of the hierarchy is refused",
		files:   map[string]string{"a/memory.max": "1\n"},
		cg:      "/../a",
		wantErr: "not a clean path",
	}, {
		name:    "a path that cleans into another cgroup is refused",
		files:   map[string]string{"a/memory.max": "1\n"},
		cg:      "/b/../a",
		wantErr: "not a clean path",
	}, {
		name:    "relative path",
		files:   map[string]string{"a/memory.max": "1\n"},
		cg:      "a",
		wantErr: "not an absolute cgroup v2 path",
	}, {
		name:    "empty element",
		files:   map[string]string{"a/memory.max": "1\n"},
		cg:      "//a",
		wantErr: "not a clean path",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := readCgroupLimits(writeTree(t, tc.files), tc.cg)
			if tc.wantErr == "" && err != nil {
				t.Errorf("error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want one saying %q", err, tc.wantErr)
			}
			if (l == nil) != (tc.want == nil) || l != nil && *l != *tc.want {
				t.Errorf("limits = %+v, want %+v", l, tc.want)
			}
		})
	}
}

// TestReadCgroupLimitsStaysInside plants symlinks where a hostile process
// might hope for them: nothing outside the root is ever read.
func TestReadCgroupLimitsStaysInside(t *testing.T) {
	dir := writeTree(t, map[string]string{"outside/memory.max": "7\n", "root/a/pids.max": "9\n"})
	root := filepath.Join(dir, "root")
	if err := os.Symlink("../../outside/memory.max", filepath.Join(root, "a", "memory.max")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}

	l, err := readCgroupLimits(root, "/a")
	if err == nil || l == nil || l.MemoryMax != 0 || l.PidsMax != 9 {
		t.Errorf("symlinked memory.max: limits %+v, error %v; want pids.max read, memory.max refused", l, err)
	}
	l, err = readCgroupLimits(root, "/escape")
	if l != nil || err == nil {
		t.Errorf("symlinked cgroup out of the root: limits %+v, error %v; want nothing read and an error", l, err)
	}
	for _, cg := range []string{"/../outside", "/a/../../outside"} {
		if l, err := readCgroupLimits(root, cg); l != nil || err == nil {
			t.Errorf("%s: limits %+v, error %v; want nothing read and an error", cg, l, err)
		}
	}
}

func TestGatherCgroupLimits(t *testing.T) {
	c := &corepipe.Crash{Cgroup: "12:pids:/docker/" + idA}
	gatherCgroupLimits(c, "testdata/cgroup")
	if c.CgroupLimits != nil || !hasNote(c, "cgroup v1") {
		t.Errorf("cgroup v1: limits %+v, notes %q", c.CgroupLimits, c.Notes)
	}
	c = &corepipe.Crash{Cgroup: "/../../" + fixtureCgroup}
	gatherCgroupLimits(c, "testdata/cgroup")
	if c.CgroupLimits != nil || !hasNote(c, "cgroup limits not read") {
		t.Errorf("path outside the namespace: limits %+v, notes %q", c.CgroupLimits, c.Notes)
	}
	c = &corepipe.Crash{Cgroup: fixtureCgroup}
	gatherCgroupLimits(c, "testdata/cgroup")
	if c.CgroupLimits == nil || *c.CgroupLimits != fixtureCgroupLimits || len(c.Notes) != 0 {
		t.Errorf("fixture: limits %+v, notes %q", c.CgroupLimits, c.Notes)
	}
}
