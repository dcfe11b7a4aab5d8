package collector

import (
	"strings"

	"github.com/corepipe/corepipe"
)

// parseCgroup reads /proc/<pid>/cgroup: it returns the cgroup v2 path (or,
// on a v1 host, the lines joined by ';') and the container the path names,
// nil when it names none.
func parseCgroup(b []byte) (string, *corepipe.Container) {
	var v2 string
	var v1, paths []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-ID:controllers:path; the path itself may contain ':'.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		} else {
			v1 = append(v1, line)
		}
		paths = append(paths, parts[2])
	}
	path := v2
	if path == "" {
		path = strings.Join(v1, ";")
	}
	for _, p := range paths {
		if c := containerFromPath(p); c != nil {
			return path, c
		}
	}
	return path, nil
}

// scopePrefixes are the systemd scope units container runtimes create,
// "<prefix><id>.scope", with the runtime's name.
var scopePrefixes = []struct{ prefix, runtime string }{
	{"cri-containerd-", "containerd"},
	{"crio-", "cri-o"},
	{"docker-", "docker"},
	{"libpod-", "podman"},
}

// containerFromPath finds the container ID (and the pod UID on Kubernetes)
// in one cgroup path. Only the cgroups a runtime creates on the host, at
// fixed places under the hierarchy's root, can name a container: a process
// can create and name cgroups anywhere below a cgroup delegated to it (a
// systemd user session, a container with its own cgroup namespace), so a
// pattern found further down says nothing. The places are:
//
//	/kubepods…/…pod<uid>…/<runtime scope or bare ID>   Kubernetes, both drivers
//	/system.slice/docker-<id>.scope, /docker/<id>     docker
//	/machine.slice/libpod-<id>.scope                  rootful podman
//
// Rootless podman lives in the user's own delegated tree, where a process
// could name any container: it gets no container ID. The outermost match
// wins: below the container's cgroup the process names things itself.
func containerFromPath(path string) *corepipe.Container {
	elems := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(elems) < 2 || !strings.HasPrefix(path, "/") {
		return nil
	}
	if strings.HasPrefix(elems[0], "kubepods") {
		return kubeContainer(elems)
	}
	id, runtime, ok := scopeID(elems[1])
	switch {
	case elems[0] == "system.slice" && ok && runtime == "docker",
		elems[0] == "machine.slice" && ok && runtime == "podman":
		return &corepipe.Container{ID: id, Runtime: runtime}
	case elems[0] == "docker" && isContainerID(elems[1]):
		return &corepipe.Container{ID: elems[1], Runtime: "docker"}
	}
	return nil
}

// kubeContainer reads a path under the kubelet's root cgroup: the QoS level
// (absent for guaranteed pods), the pod, then the container, each where the
// kubelet puts it and nowhere else.
func kubeContainer(elems []string) *corepipe.Container {
	if elems[0] != "kubepods" && elems[0] != "kubepods.slice" {
		return nil
	}
	i := 1
	if isQoS(elems[1]) {
		i = 2
	}
	if i >= len(elems) {
		return nil
	}
	uid := podUID(elems[i])
	if uid == "" {
		return nil
	}
	c := &corepipe.Container{PodUID: uid}
	if i+1 < len(elems) {
		if id, runtime, ok := scopeID(elems[i+1]); ok {
			c.ID, c.Runtime = id, runtime
		} else if isContainerID(elems[i+1]) {
			// Without systemd the runtime names the cgroup after the bare
			// ID and is not in the path at all.
			c.ID = elems[i+1]
		}
	}
	return c
}

// isQoS recognises the QoS levels of both cgroup drivers.
func isQoS(e string) bool {
	switch e {
	case "burstable", "besteffort", "kubepods-burstable.slice", "kubepods-besteffort.slice":
		return true
	}
	return false
}

// scopeID recognises "<runtime prefix><id>.scope". The conmon scopes of
// CRI-O and podman hold the monitor, not the container, and are skipped.
func scopeID(elem string) (id, runtime string, ok bool) {
	rest, ok := strings.CutSuffix(elem, ".scope")
	if !ok {
		return "", "", false
	}
	for _, p := range scopePrefixes {
		if id, ok := strings.CutPrefix(rest, p.prefix); ok && isContainerID(id) {
			return id, p.runtime, true
		}
	}
	return "", "", false
}

// podUID recognises "pod<uid>" (cgroupfs driver) and
// "kubepods-<qos>-pod<uid>.slice" (systemd driver, '-' in the UID turned
// into '_').
func podUID(elem string) string {
	elem = strings.TrimSuffix(elem, ".slice")
	i := strings.LastIndex(elem, "pod")
	if i < 0 || (i > 0 && elem[i-1] != '-') {
		return ""
	}
	uid := strings.ReplaceAll(elem[i+len("pod"):], "_", "-")
	if !isUUID(uid) {
		return ""
	}
	return uid
}

// isContainerID reports whether s is a 64-digit lowercase hex ID, the form
// containerd, CRI-O, docker and podman all use.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHex(b byte) bool { return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' }
