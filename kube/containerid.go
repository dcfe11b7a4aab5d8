package kube

import "strings"

// runtimePrefixes are the schemes the kubelet puts in front of a container
// ID in the pod status, with the runtime name the collector uses for the
// same runtime when it reads the ID from the cgroup.
var runtimePrefixes = []struct{ scheme, runtime string }{
	{"containerd://", "containerd"},
	{"cri-o://", "cri-o"},
	{"docker://", "docker"},
}

// ParseContainerID splits a pod status container ID ("containerd://<id>")
// into the runtime and the bare ID the collector finds in the cgroup. An ID
// without a known scheme is returned whole with an empty runtime.
func ParseContainerID(s string) (runtime, id string) {
	for _, p := range runtimePrefixes {
		if rest, ok := strings.CutPrefix(s, p.scheme); ok {
			return p.runtime, rest
		}
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		return scheme, rest
	}
	return "", s
}
