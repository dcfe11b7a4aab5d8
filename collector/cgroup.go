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
// in one cgroup path. The outermost match wins: a process can create and
// name cgroups below its own delegated one, so only the part of the path the
// runtime created on the host can be trusted to name the container.
func containerFromPath(path string) *corepipe.Container {
	var c corepipe.Container
	inKube := false
	elems := strings.Split(path, "/")
	for i, e := range elems {
		if strings.HasPrefix(e, "kubepods") {
			inKube = true
		}
		if inKube && c.PodUID == "" {
			c.PodUID = podUID(e)
		}
		if id, runtime, ok := scopeID(e); ok {
			c.ID, c.Runtime = id, runtime
			break
		}
		// Without systemd the runtimes name the cgroup after the bare ID:
		// /docker/<id>, or /kubepods/<qos>/pod<uid>/<id> where the runtime
		// is not in the path at all.
		if isContainerID(e) && i > 0 && (inKube || elems[i-1] == "docker") {
			c.ID = e
			if elems[i-1] == "docker" {
				c.Runtime = "docker"
			}
			break
		}
	}
	if c.ID == "" && c.PodUID == "" {
		return nil
	}
	return &c
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
