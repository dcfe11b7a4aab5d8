package containerlog

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// Roots are where the kubelet keeps logs on a node.
type Roots struct {
	// Pods is /var/log/pods: <ns>_<pod>_<uid>/<container>/<attempt>.log.
	Pods string
	// Containers is /var/log/containers:
	// <pod>_<ns>_<container>-<containerID>.log, links into Pods.
	Containers string
}

// DefaultRoots are the kubelet's.
var DefaultRoots = Roots{Pods: "/var/log/pods", Containers: "/var/log/containers"}

// Run names one run of a container.
type Run struct {
	Namespace, Pod, PodUID, Container string
	// ContainerID is the runtime's ID, with or without its
	// "containerd://" scheme.
	ContainerID string
	// Attempt is the run's restart count: its log is <attempt>.log.
	Attempt int
}

// Files returns the log files of run, oldest first: the rotated ones
// (<attempt>.log.<timestamp>, gzipped or not), then the current one. It
// looks first for the link the kubelet keeps by container ID, which names
// exactly this run, then in the pod's own directory by attempt. Every file
// returned lies inside roots.Pods, whatever the links say.
func Files(roots Roots, run Run) ([]string, error) {
	current := ""
	if id := bareID(run.ContainerID); id != "" && roots.Containers != "" && safe(run.Pod, run.Namespace, run.Container) {
		link := filepath.Join(roots.Containers, fmt.Sprintf("%s_%s_%s-%s.log", run.Pod, run.Namespace, run.Container, id))
		if target, err := filepath.EvalSymlinks(link); err == nil && inside(roots.Pods, target) {
			current = target
		}
	}
	if current == "" && safe(run.Namespace, run.Pod, run.PodUID, run.Container) {
		dir := filepath.Join(roots.Pods, fmt.Sprintf("%s_%s_%s", run.Namespace, run.Pod, run.PodUID), run.Container)
		current = filepath.Join(dir, strconv.Itoa(run.Attempt)+".log")
	}
	if current == "" {
		return nil, fmt.Errorf("%w: no log for a container run named %q", corepipe.ErrInvalid, run.Namespace+"/"+run.Pod+"/"+run.Container)
	}
	rotated, _ := filepath.Glob(globEscape(current) + ".*")
	rotated = slices.DeleteFunc(rotated, func(p string) bool { return strings.HasSuffix(p, ".tmp") })
	// The kubelet names rotations <file>.<YYYYMMDD-HHMMSS>[.gz]: sorted by
	// name, they are sorted by time.
	slices.SortFunc(rotated, func(a, b string) int {
		return strings.Compare(strings.TrimSuffix(a, ".gz"), strings.TrimSuffix(b, ".gz"))
	})
	files := append(rotated, current)
	var out []string
	for _, f := range files {
		if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no log file for %s/%s container %s attempt %d", corepipe.ErrNotFound, run.Namespace, run.Pod, run.Container, run.Attempt)
	}
	return out, nil
}

// bareID drops the runtime's scheme: "containerd://abc" → "abc".
func bareID(id string) string {
	if _, rest, ok := strings.Cut(id, "://"); ok {
		id = rest
	}
	if !safe(id) {
		return ""
	}
	return id
}

// safe reports whether every name can be one path element.
func safe(names ...string) bool {
	for _, n := range names {
		if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\\\x00") {
			return false
		}
	}
	return true
}

func inside(root, path string) bool {
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}
