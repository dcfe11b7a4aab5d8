package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/corepipe/corepipe/internal/testkit"
)

// Connections to a killed server end with it: anything left running after
// the tests, such as a wait goroutine, is a leak.
func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

func TestStopRestartKeepsObjects(t *testing.T) {
	var pids []int
	t.Run("server", func(t *testing.T) {
		s := Start(t)
		pids = []int{s.etcd.cmd.Process.Pid, s.api.cmd.Process.Pid}
		ctx := context.Background()
		client := s.Client()
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
		if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// A pod straight onto a node: no service account, no scheduler.
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
			Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1"}}},
		}
		if _, err := client.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}

		s.Stop()
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := client.CoreV1().Pods("shop").Get(short, "web", metav1.GetOptions{})
		cancel()
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("with the API server stopped: %v, want connection refused", err)
		}
		s.Stop() // stopping twice is harmless
		if err := syscall.Kill(pids[1], 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("stopped API server: kill 0: %v", err)
		}

		s.Restart()
		// The same client, and one from the kubeconfig file.
		if _, err := client.CoreV1().Pods("shop").Get(ctx, "web", metav1.GetOptions{}); err != nil {
			t.Fatalf("after a restart: %v", err)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
		if err != nil {
			t.Fatal(err)
		}
		fromFile, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pods, err := fromFile.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-a"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("pods of node-a from the kubeconfig's client: %v, %v", pods, err)
		}
		pids = append(pids, s.api.cmd.Process.Pid)
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d outlived its test: kill 0: %v", pid, err)
		}
	}
}

func TestConfigForHasOnlyItsRights(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	reader, err := kubernetes.NewForConfig(s.ConfigFor("default", "reader"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("an account without roles lists pods: %v", err)
	}
	s.Grant("default", "reader", []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}})
	if _, err := reader.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list pods with the role: %v", err)
	}
	if _, err := reader.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets with a pod reader's role: %v", err)
	}
}

// BenchmarkStart measures a start of etcd and the API server until
// /readyz, and what they hold in memory once ready:
// go test -run '^$' -bench Start -benchtime 5x ./internal/kubetest
func BenchmarkStart(b *testing.B) {
	var etcdRSS, apiRSS float64
	for b.Loop() {
		s := Start(b)
		b.StopTimer()
		etcdRSS += rssMiB(b, s.etcd.cmd.Process.Pid)
		apiRSS += rssMiB(b, s.api.cmd.Process.Pid)
		s.stopAll()
		b.StartTimer()
	}
	b.ReportMetric(etcdRSS/float64(b.N), "etcd-MiB")
	b.ReportMetric(apiRSS/float64(b.N), "apiserver-MiB")
}

func rssMiB(b *testing.B, pid int) float64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kib) / 1024
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
