package collector

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
)

const (
	idA        = "4f1d9c2b7a6e5d4c3b2a19f8e7d6c5b4a39281f7e6d5c4b3a291807f6e5d4c3b"
	idB        = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testPodUID = "0f3c2a8e-5d1b-4c7e-9a2f-8b6d4e1c3a7f"
	testPodSD  = "0f3c2a8e_5d1b_4c7e_9a2f_8b6d4e1c3a7f"
)

func TestParseCgroup(t *testing.T) {
	fixture := procFile(t, "cgroup")
	for _, tc := range []struct {
		name, file string
		wantPath   string
		want       *corepipe.Container
	}{{
		name:     "containerd, systemd driver, cgroup v2",
		file:     string(fixture),
		wantPath: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + testPodSD + ".slice/cri-containerd-" + idA + ".scope",
		want:     &corepipe.Container{ID: idA, Runtime: "containerd", PodUID: testPodUID},
	}, {
		name:     "CRI-O, guaranteed pod",
		file:     "0::/kubepods.slice/kubepods-pod" + testPodSD + ".slice/crio-" + idA + ".scope\n",
		wantPath: "/kubepods.slice/kubepods-pod" + testPodSD + ".slice/crio-" + idA + ".scope",
		want:     &corepipe.Container{ID: idA, Runtime: "cri-o", PodUID: testPodUID},
	}, {
		name:     "CRI-O conmon is not the container",
		file:     "0::/kubepods.slice/kubepods-pod" + testPodSD + ".slice/crio-conmon-" + idA + ".scope\n",
		wantPath: "/kubepods.slice/kubepods-pod" + testPodSD + ".slice/crio-conmon-" + idA + ".scope",
		want:     &corepipe.Container{PodUID: testPodUID},
	}, {
		name:     "docker, systemd driver",
		file:     "0::/system.slice/docker-" + idA + ".scope\n",
		wantPath: "/system.slice/docker-" + idA + ".scope",
		want:     &corepipe.Container{ID: idA, Runtime: "docker"},
	}, {
		name:     "docker, cgroupfs driver, cgroup v1",
		file:     "12:pids:/docker/" + idA + "\n4:cpu,cpuacct:/docker/" + idA + "\n1:name=systemd:/docker/" + idA + "\n",
		wantPath: "12:pids:/docker/" + idA + ";4:cpu,cpuacct:/docker/" + idA + ";1:name=systemd:/docker/" + idA,
		want:     &corepipe.Container{ID: idA, Runtime: "docker"},
	}, {
		name:     "kubepods, cgroupfs driver, cgroup v1: runtime not in the path",
		file:     "11:memory:/kubepods/burstable/pod" + testPodUID + "/" + idA + "\n0::/\n",
		wantPath: "/",
		want:     &corepipe.Container{ID: idA, PodUID: testPodUID},
	}, {
		name:     "podman, rootful",
		file:     "0::/machine.slice/libpod-" + idA + ".scope/container\n",
		wantPath: "/machine.slice/libpod-" + idA + ".scope/container",
		want:     &corepipe.Container{ID: idA, Runtime: "podman"},
	}, {
		// The user's delegated tree can name any container: trusting it
		// would let a user's process pass for a victim's container.
		name:     "podman, rootless: not attributed",
		file:     "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + idA + ".scope/container\n",
		wantPath: "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + idA + ".scope/container",
	}, {
		name:     "kubepods named inside a delegated user tree: not attributed",
		file:     "0::/user.slice/user-1000.slice/user@1000.service/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + testPodSD + ".slice/cri-containerd-" + idA + ".scope\n",
		wantPath: "/user.slice/user-1000.slice/user@1000.service/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + testPodSD + ".slice/cri-containerd-" + idA + ".scope",
	}, {
		name:     "a pod slice below an unrelated cgroup: not attributed",
		file:     "0::/system.slice/evil.service/kubepods-burstable-pod" + testPodSD + ".slice/cri-containerd-" + idA + ".scope\n",
		wantPath: "/system.slice/evil.service/kubepods-burstable-pod" + testPodSD + ".slice/cri-containerd-" + idA + ".scope",
	}, {
		name:     "a runtime scope outside any runtime's place: not attributed",
		file:     "0::/user.slice/user-1000.slice/session-3.scope/docker-" + idA + ".scope\n",
		wantPath: "/user.slice/user-1000.slice/session-3.scope/docker-" + idA + ".scope",
	}, {
		name:     "a container's own nested kubepods cgroups do not rename it",
		file:     "0::/kubepods/besteffort/pod" + testPodUID + "/" + idA + "/kubepods/pod" + testPodUID[:35] + "0/" + idB + "\n",
		wantPath: "/kubepods/besteffort/pod" + testPodUID + "/" + idA + "/kubepods/pod" + testPodUID[:35] + "0/" + idB,
		want:     &corepipe.Container{ID: idA, PodUID: testPodUID},
	}, {
		name:     "a cgroup named by the process below its container cannot override it",
		file:     "0::/system.slice/docker-" + idA + ".scope/docker-" + idB + ".scope\n",
		wantPath: "/system.slice/docker-" + idA + ".scope/docker-" + idB + ".scope",
		want:     &corepipe.Container{ID: idA, Runtime: "docker"},
	}, {
		name:     "host process",
		file:     "0::/user.slice/user-1000.slice/session-3.scope\n",
		wantPath: "/user.slice/user-1000.slice/session-3.scope",
	}, {
		name:     "short or upper-case IDs are not container IDs",
		file:     "0::/system.slice/docker-" + idA[:12] + ".scope/docker-" + "ABCDEF" + idA[6:] + ".scope\n",
		wantPath: "/system.slice/docker-" + idA[:12] + ".scope/docker-" + "ABCDEF" + idA[6:] + ".scope",
	}, {
		name: "garbage",
		file: "\x00\n:::\nno colons here\n",
		// "::" splits into ["", "", ":"]: a v1 line with an odd path.
		wantPath: ":::",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			path, c := parseCgroup([]byte(tc.file))
			if path != tc.wantPath {
				t.Errorf("path = %q, want %q", path, tc.wantPath)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Errorf("container = %+v, want %+v", c, tc.want)
			}
		})
	}
}

// FuzzParseCgroup: any /proc/<pid>/cgroup parses without panicking, and a
// container is only ever named by a path rooted where a runtime puts its
// cgroups, with IDs of the runtimes' forms.
func FuzzParseCgroup(f *testing.F) {
	fixture, _ := os.ReadFile("testdata/proc/4242/cgroup")
	f.Add(string(fixture))
	f.Add("0::/user.slice/user-1000.slice/user@1000.service/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + testPodSD + ".slice/cri-containerd-" + idA + ".scope\n")
	f.Add("11:memory:/kubepods/burstable/pod" + testPodUID + "/" + idA + "\n0::/\n")
	f.Add("0::/system.slice/docker-" + idA + ".scope\n")
	f.Add("0::/docker/" + idA + "\n")
	f.Add("\x00\n:::\n")
	f.Fuzz(func(t *testing.T, file string) {
		_, c := parseCgroup([]byte(file))
		if c == nil {
			return
		}
		if c.ID != "" && !isContainerID(c.ID) || c.PodUID != "" && !isUUID(c.PodUID) || c.ID == "" && c.PodUID == "" {
			t.Fatalf("container %+v", c)
		}
		rooted := false
		for line := range strings.SplitSeq(file, "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && containerFromPath(parts[2]) != nil {
				for _, top := range []string{"/kubepods/", "/kubepods.slice/", "/system.slice/", "/docker/", "/machine.slice/"} {
					rooted = rooted || strings.HasPrefix(parts[2], top)
				}
			}
		}
		if !rooted {
			t.Fatalf("container %+v named by a path outside the runtimes' places: %q", c, file)
		}
	})
}
