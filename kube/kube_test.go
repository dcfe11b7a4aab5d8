package kube

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
)

func TestMain(m *testing.M) {
	// client-go reports the unreachable API servers of the tests on klog.
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	testkit.VerifyTestMain(m)
}

const testNode = "node-a"

// cid is a 64-hex container ID, as the runtimes make them.
func cid(n int) string { return fmt.Sprintf("%064x", n) }

var t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// newPod is a pod of Deployment name on testNode with one container "app".
func newPod(name string, uid int, statuses ...corev1.ContainerStatus) *corev1.Pod {
	hash := "7d9f8c6b5"
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:              name + "-" + hash + "-x2k4p",
			Namespace:         "shop",
			UID:               types.UID(fmt.Sprintf("1f0e3dad-9990-4c2a-8a2e-%012d", uid)),
			Labels:            map[string]string{"app": name, "pod-template-hash": hash},
			CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour)),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name + "-" + hash,
				UID: "rs-uid", Controller: new(true),
			}},
		},
		Spec: corev1.PodSpec{
			NodeName: testNode,
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example/shop/" + name + ":1.2",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
					corev1.ResourceMemory: resource.MustParse("256Mi"),
				}},
			}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: statuses},
	}
}

// running is a running container "app" with container ID raw.
func running(raw string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: "app", ContainerID: raw, Ready: true,
		Image:   "registry.example/shop/web:1.2",
		ImageID: "registry.example/shop/web@sha256:" + strings.Repeat("ab", 32),
		State:   corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0)}},
	}
}

// restarted is cs after its previous run, raw, ended with exit and reason.
func restarted(cs corev1.ContainerStatus, raw string, exit int32, reason string, finished time.Time) corev1.ContainerStatus {
	cs.RestartCount++
	cs.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: exit, Reason: reason, ContainerID: raw,
		StartedAt: metav1.NewTime(finished.Add(-10 * time.Minute)), FinishedAt: metav1.NewTime(finished),
	}}
	return cs
}

// recorder stands in for the agent: it keeps what it is given and tells
// the watcher, as the agent does after publishing.
type recorder struct {
	w     *Watcher
	got   chan *corepipe.Crash
	mu    sync.Mutex
	fails int
}

func newRecorder() *recorder { return &recorder{got: make(chan *corepipe.Crash, 100)} }

func (r *recorder) ShipRecord(ctx context.Context, c *corepipe.Crash) error {
	r.mu.Lock()
	if r.fails > 0 {
		r.fails--
		r.mu.Unlock()
		return fmt.Errorf("queue: nats: no servers available")
	}
	r.mu.Unlock()
	r.got <- c
	r.w.Shipped(ctx, c)
	return nil
}

// next returns the next recorded crash; it fails the test after a long
// wait, which only a broken watcher reaches.
func (r *recorder) next(t *testing.T) *corepipe.Crash {
	t.Helper()
	select {
	case c := <-r.got:
		return c
	case <-time.After(testkit.WaitDeadline):
		t.Fatal("no crash recorded")
		return nil
	}
}

// none checks that nothing more was recorded once the watcher has worked
// through everything the informer delivered up to now.
func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-r.got:
		t.Fatalf("unexpected record %s: %+v", c.ID, c.Termination)
	default:
	}
}

// start runs a watcher of client until the test ends and waits for its
// first listing (unless the API server is meant to be down).
func start(t *testing.T, cfg Config, rec *recorder, waitSync bool) *Watcher {
	t.Helper()
	return startWith(t, cfg, rec, waitSync, nil)
}

// startWith is start with before applied to the watcher before it runs.
func startWith(t *testing.T, cfg Config, rec *recorder, waitSync bool, before func(*Watcher)) *Watcher {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = testNode
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(w)
	}
	if rec != nil {
		rec.w = w
	} else {
		rec = &recorder{w: w, got: make(chan *corepipe.Crash, 100)}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, rec)
	}()
	t.Cleanup(func() { cancel(); <-done })
	if waitSync {
		testkit.WaitFor(t, "the pod informer to sync", w.Synced)
	}
	return w
}

func fakeClient(objs ...*corev1.Pod) *fake.Clientset {
	client := fake.NewClientset()
	for _, p := range objs {
		client.Tracker().Add(p)
	}
	return client
}

var _ kubernetes.Interface = (*fake.Clientset)(nil)

type atomicInt struct {
	mu sync.Mutex
	n  int
}

func (a *atomicInt) add() { a.mu.Lock(); a.n++; a.mu.Unlock() }
func (a *atomicInt) get() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

func slogOf(h slog.Handler) *slog.Logger { return slog.New(h) }
