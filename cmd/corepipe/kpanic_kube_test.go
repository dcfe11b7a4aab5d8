package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/kubetest"
	"github.com/corepipe/corepipe/kube"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// freeUDP is a loopback UDP address nothing listens on.
func freeUDP(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
}

func createPod(t *testing.T, client kubernetes.Interface, name, node string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.example/shop/" + name + ":1"}}},
	}
	p, err := client.CoreV1().Pods("shop").Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDevKernelPanicTellsPods is the kernel-panic route on a real API
// server: a real kernel's netconsole capture from 127.0.0.1 reaches
// "corepipe dev --netconsole --kube", which names node-a by its InternalIP;
// the report lists node-a's pods; once the node lifecycle controller's part
// (played here) sets node-a's Ready to Unknown, those pods carry the
// termination reason and a KernelPanic event, and node-b's pod nothing.
func TestDevKernelPanicTellsPods(t *testing.T) {
	s := kubetest.Start(t)
	admin := s.Client()
	ctx := context.Background()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.CreateNode("node-a", "127.0.0.1", "boot-a")
	s.CreateNode("node-b", "127.0.0.2", "boot-b")
	web := createPod(t, admin, "web", "node-a")
	db := createPod(t, admin, "db", "node-a")
	other := createPod(t, admin, "other", "node-b")

	dir := t.TempDir()
	addr := freeUDP(t)
	runCtx, cancel := context.WithCancel(ctx)
	out := &testkit.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runCLI(runCtx, out, nil, "dev", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
			"--netconsole", addr, "--netconsole-quiet", "300ms",
			"--kube", "--kubeconfig", s.Kubeconfig(), "--node-name", "node-b", "--pod-logs", "", "--ui-url", "https://corepipe.example")
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	base := waitUI(t, out, done)
	replay(t, addr, extCapture)

	var reports []corepipe.Report
	testkit.WaitFor(t, "the analysed kernel panic", func() bool {
		reports = kernelCrashes(t, base)
		return len(reports) == 1 && reports[0].Status == corepipe.StatusAnalyzed
	})
	var r corepipe.Report
	getJSON(t, base+"/api/v1/crashes/"+reports[0].ID, &r)
	if r.Node != "node-a" || r.Kernel == nil || r.Kernel.Message != "sysrq triggered crash" {
		t.Fatalf("node %q kernel %+v", r.Node, r.Kernel)
	}
	want := []corepipe.PodRef{{Namespace: "shop", Pod: "db", UID: string(db.UID)}, {Namespace: "shop", Pod: "web", UID: string(web.UID)}}
	if fmt.Sprint(r.Kernel.Pods) != fmt.Sprint(want) {
		t.Errorf("pods %+v, want %+v", r.Kernel.Pods, want)
	}

	s.UpdateNodeStatus("node-a", kubetest.NodeLost)
	reason := "KernelPanic: sysrq triggered crash in sysrq_handle_crash (corepipe crash " + r.ID + ", https://corepipe.example/crashes/" + r.ID + ")"
	for _, p := range []*corev1.Pod{web, db} {
		testkit.WaitFor(t, p.Name+"'s termination reason", func() bool {
			got, err := admin.CoreV1().Pods("shop").Get(ctx, p.Name, metav1.GetOptions{})
			return err == nil && got.Annotations[kube.AnnotationTerminationReason] == reason
		})
	}
	testkit.WaitFor(t, "the events", func() bool {
		evs, err := admin.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("reason", kube.ReasonKernelPanic).String()})
		if err != nil || len(evs.Items) != 3 {
			return false
		}
		on := map[string]bool{}
		for _, e := range evs.Items {
			on[e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name] = true
		}
		return on["Pod/web"] && on["Pod/db"] && on["Node/node-a"]
	})
	if got, _ := admin.CoreV1().Pods("shop").Get(ctx, other.Name, metav1.GetOptions{}); len(got.Annotations) != 0 {
		t.Errorf("node-b's pod annotated: %v", got.Annotations)
	}
}

// lines is a slog handler that keeps each record's message and error.
type lines struct{ buf *testkit.SyncBuffer }

func (l lines) Enabled(context.Context, slog.Level) bool { return true }
func (l lines) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			msg += ": " + a.Value.String()
		}
		return true
	})
	fmt.Fprintln(l.buf, msg)
	return nil
}
func (l lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l lines) WithGroup(string) slog.Handler      { return l }

// TestKpanicKubeUnreachable: with --kube and no API server to answer, a
// panic is still recorded, without pods, and one line says why.
func TestKpanicKubeUnreachable(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := natsq.StartEmbedded(natsq.EmbeddedOptions{StoreDir: filepath.Join(dir, "nats"), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	addr := freeUDP(t)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testkit.SyncBuffer{}
	root := newRoot(slog.New(lines{logs}), nil)
	root.SetOut(&testkit.SyncBuffer{})
	root.SetErr(&testkit.SyncBuffer{})
	root.SetArgs([]string{"kpanic", "--listen", "udp://" + addr, "--blob", "file://" + filepath.Join(dir, "blobs"),
		"--nats", emb.ClientURL(), "--netconsole-quiet", "300ms", "--kube", "--kubeconfig", kubeconfig})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testkit.WaitFor(t, "the receiver", func() bool { return strings.Contains(logs.String(), "netconsole receiver listening") })
	replay(t, addr, extCapture)
	// The first wait for the API server delays the record, by SyncWait.
	testkit.WaitFor(t, "the panic recorded", func() bool { return strings.Contains(logs.String(), "kernel panic recorded\n") })

	crashes := queuedCrashes(t, ctx, emb.ClientURL())
	if len(crashes) != 1 || crashes[0].Node != "127.0.0.1" || len(crashes[0].Pods) != 0 {
		t.Fatalf("crashes %+v", crashes)
	}
	want := "netconsole: pods of the node unknown: the cluster's nodes and pods could not be listed (API server unreachable, or access denied)"
	if n := strings.Count(logs.String(), want+"\n"); n != 1 {
		t.Errorf("%d times %q in\n%s", n, want, logs.String())
	}
}
