package e2e

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/crilog"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
	"github.com/corepipe/corepipe/internal/testkit/kubetest"
)

// The crashes of this file are the ones most Go services in Kubernetes
// have: the main process is PID 1 of its container, so the runtime's
// SIGABRT is ignored and no core is ever dumped. The reports come from the
// container's log and from package crashout.

// pid1 runs exe as PID 1 of a new PID namespace with env, its output to
// stdout and stderr.
func pid1(t *testing.T, exe string, env []string, stdout, stderr io.Writer, args ...string) {
	t.Helper()
	cmd := exec.Command("unshare", append([]string{"--pid", "--fork", "--mount-proc", exe}, args...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	done := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer done.Stop()
	err := cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("PID 1 ended with %v (%v), want exit code 2 and no core", cmd.ProcessState, err)
	}
}

// waitReportWhere polls the API for a finished report that ok accepts.
func waitReportWhere(t *testing.T, api string, timeout time.Duration, ok func(*corepipe.Report) bool) *corepipe.Report {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var list struct {
			Crashes []corepipe.Report `json:"crashes"`
		}
		getJSON(t, api+"/api/v1/crashes?limit=100", &list)
		for _, c := range list.Crashes {
			if c.Status != corepipe.StatusPending && ok(&c) {
				var full corepipe.Report
				getJSON(t, api+"/api/v1/crashes/"+url.PathEscape(c.ID), &full)
				return &full
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no matching report within %v", timeout)
	return nil
}

// matchesRuntime requires r to say what the runtime printed, and the UI's
// crash page to show it as a report from source.
func matchesRuntime(t *testing.T, api string, r *corepipe.Report, stderr, source string) {
	t.Helper()
	want, err := gotraceback.Parse(stderr)
	if err != nil {
		t.Fatalf("the runtime's output: %v\n%s", err, stderr)
	}
	if diffs := gotraceback.Compare(r, want); len(diffs) > 0 {
		t.Errorf("report disagrees with the runtime:\n%s\n\nruntime printed:\n%s", strings.Join(diffs, "\n"), tail(stderr, 40))
	}
	if r.Source != source || r.Kind != corepipe.KindGo || r.Signature == "" {
		t.Errorf("source %q kind %q signature %q", r.Source, r.Kind, r.Signature)
	}
	status, page := get(t, api+"/crashes/"+r.ID)
	if status != 200 || !bytes.Contains(page, []byte(corepipe.SourceName(source))) || !bytes.Contains(page, []byte("main.(*handler).serve")) {
		t.Errorf("crash page: %d\n%.2000s", status, page)
	}
}

// TestCrashOutputAsPID1: a service importing crashout crashes as PID 1
// with no GOTRACEBACK set; its report, from the crash-output file, has
// every goroutine the runtime printed.
func TestCrashOutputAsPID1(t *testing.T) {
	holdCorePattern(t)
	exe := crashtest.BuildPackage(t, "crashout/testdata/service")
	dir := filepath.Join(t.TempDir(), "crash-output")
	_, api := startDev(t, nil, "--crash-output-dir", dir)
	var stderr bytes.Buffer
	for range 100 {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	pid1(t, exe, []string{"PATH=" + os.Getenv("PATH"), "COREPIPE_CRASH_DIR=" + dir, "POD_NAME=web-7d9f", "POD_NAMESPACE=shop"}, io.Discard, &stderr, "panic")
	r := waitReportWhere(t, api, 30*time.Second, func(r *corepipe.Report) bool { return r.Source == corepipe.SourceCrashOutput })
	matchesRuntime(t, api, r, stderr.String(), corepipe.SourceCrashOutput)
	if r.Container == nil || r.Container.Pod != "web-7d9f" || r.Go == nil || r.Go.MainModule == "" {
		t.Errorf("container %+v go %+v", r.Container, r.Go)
	}
}

// TestPodLogAsPID1: a Go service in a pod (PID 1, GOTRACEBACK unset)
// panics; its CRI log is all that is left. corepipe dev, watching a real
// API server as a node's agent would, sees the container's bad end (the
// test plays the kubelet), reads the log and reports the crash from it.
func TestPodLogAsPID1(t *testing.T) {
	holdCorePattern(t)
	cluster := kubetest.Start(t)
	client := cluster.Client()
	ctx := context.Background()
	const node = "node-e2e"
	pod, err := client.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f8c6b5-x2k4p", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.example/shop/web:1.2"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := t.TempDir()
	pods, containers := filepath.Join(logs, "pods"), filepath.Join(logs, "containers")
	_, api := startDev(t, nil, "--kube", "--kubeconfig", cluster.Kubeconfig(), "--node-name", node,
		"--pod-logs", pods, "--container-logs", containers)

	first, second := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	w, err := crilog.Open(crilog.Run{PodsRoot: pods, ContainersRoot: containers, Namespace: "default", Pod: pod.Name,
		PodUID: string(pod.UID), Container: "app", ContainerID: first, Attempt: 0, MaxSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	setStatus(t, client, pod, corev1.ContainerStatus{Name: "app", ContainerID: "containerd://" + first, Image: "registry.example/shop/web:1.2",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}}})

	exe := crashtest.BuildPackage(t, "crashout/testdata/service")
	var stderr bytes.Buffer
	pid1(t, exe, []string{"PATH=" + os.Getenv("PATH")}, w.Stream("stdout"), io.MultiWriter(w.Stream("stderr"), &stderr), "panic")
	w.Close()
	ended := time.Now()
	setStatus(t, client, pod, corev1.ContainerStatus{Name: "app", ContainerID: "containerd://" + second, Image: "registry.example/shop/web:1.2",
		RestartCount: 1,
		State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(ended)}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 2, Reason: "Error", ContainerID: "containerd://" + first,
			StartedAt: metav1.NewTime(started), FinishedAt: metav1.NewTime(ended)}}})

	r := waitReportWhere(t, api, 60*time.Second, func(r *corepipe.Report) bool {
		return r.Container != nil && r.Container.Pod == pod.Name && r.Source == corepipe.SourceLog
	})
	matchesRuntime(t, api, r, stderr.String(), corepipe.SourceLog)
	if r.Termination == nil || r.Termination.ExitCode != 2 || r.Artifacts.Log == nil || r.Artifacts.Log.Format != "cri" {
		t.Errorf("termination %+v log %+v", r.Termination, r.Artifacts.Log)
	}
}

// setStatus writes pod's container status through the status subresource,
// as the kubelet does.
func setStatus(t *testing.T, client kubernetes.Interface, pod *corev1.Pod, cs corev1.ContainerStatus) {
	t.Helper()
	ctx := context.Background()
	cur, err := client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Status.Phase = corev1.PodRunning
	cur.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
	if _, err := client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
