package kube

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ktesting "k8s.io/client-go/testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
)

func TestParseContainerID(t *testing.T) {
	for _, tc := range []struct{ in, runtime, id string }{
		{"containerd://" + cid(1), "containerd", cid(1)},
		{"cri-o://" + cid(2), "cri-o", cid(2)},
		{"docker://" + cid(3), "docker", cid(3)},
		{"rkt://abc", "rkt", "abc"},
		{cid(4), "", cid(4)},
		{"", "", ""},
	} {
		runtime, id := ParseContainerID(tc.in)
		if runtime != tc.runtime || id != tc.id {
			t.Errorf("ParseContainerID(%q) = %q, %q; want %q, %q", tc.in, runtime, id, tc.runtime, tc.id)
		}
	}
}

func TestOwnerOf(t *testing.T) {
	ctrl := func(kind, name string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{Kind: kind, Name: name, Controller: new(true)}}
	}
	for _, tc := range []struct {
		name   string
		refs   []metav1.OwnerReference
		labels map[string]string
		want   *corepipe.Owner
	}{
		{"deployment", ctrl("ReplicaSet", "web-7d9f8c6b5"), map[string]string{"pod-template-hash": "7d9f8c6b5"}, &corepipe.Owner{Kind: "Deployment", Name: "web"}},
		{"bare replicaset", ctrl("ReplicaSet", "web"), nil, &corepipe.Owner{Kind: "ReplicaSet", Name: "web"}},
		{"hash not the suffix", ctrl("ReplicaSet", "web-5f6d"), map[string]string{"pod-template-hash": "7d9f8c6b5"}, &corepipe.Owner{Kind: "ReplicaSet", Name: "web-5f6d"}},
		{"statefulset", ctrl("StatefulSet", "db"), nil, &corepipe.Owner{Kind: "StatefulSet", Name: "db"}},
		{"daemonset", ctrl("DaemonSet", "fluentbit"), nil, &corepipe.Owner{Kind: "DaemonSet", Name: "fluentbit"}},
		{"job", ctrl("Job", "backup-29034720"), nil, &corepipe.Owner{Kind: "Job", Name: "backup-29034720"}},
		{"not a controller", []metav1.OwnerReference{{Kind: "ConfigMap", Name: "x"}}, nil, nil},
		{"none", nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: tc.refs, Labels: tc.labels}}
			got := ownerOf(pod)
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("ownerOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// crashIn is a crash as the collector reports it: only the container ID
// (and pod UID) from the cgroup.
func crashIn(id, podUID string) *corepipe.Crash {
	return &corepipe.Crash{ID: corepipe.NewID(t0), Container: &corepipe.Container{ID: id, PodUID: podUID}}
}

func TestEnrichContainerIDFormats(t *testing.T) {
	containerd := newPod("web", 1, running("containerd://"+cid(1)))
	crio := newPod("api", 2, running("cri-o://"+cid(2)))
	// A docker pod whose container restarted: the crashed run is the last
	// state's ID, no longer the status's own.
	docker := newPod("cart", 3, restarted(running("docker://"+cid(4)), "docker://"+cid(3), 139, "Error", t0))
	w := start(t, Config{Client: fakeClient(containerd, crio, docker)}, nil, true)

	for _, tc := range []struct {
		id, runtime string
		pod         *corev1.Pod
	}{
		{cid(1), "containerd", containerd},
		{cid(2), "cri-o", crio},
		{cid(3), "docker", docker},
		{cid(4), "docker", docker},
	} {
		c := crashIn(tc.id, "")
		w.Enrich(context.Background(), c)
		got := c.Container
		if got.ID != tc.id || got.Runtime != tc.runtime || got.Namespace != "shop" || got.Pod != tc.pod.Name ||
			got.PodUID != string(tc.pod.UID) || got.Container != "app" {
			t.Errorf("container %s…: got %+v", tc.id[:12], got)
		}
		if got.Image != "registry.example/shop/web:1.2" || !strings.HasPrefix(got.ImageID, "registry.example/shop/web@sha256:") {
			t.Errorf("container %s…: image %q, image ID %q", tc.id[:12], got.Image, got.ImageID)
		}
		if got.Labels["app"] != tc.pod.Labels["app"] || got.Owner == nil || got.Owner.Kind != "Deployment" || got.Owner.Name != tc.pod.Labels["app"] {
			t.Errorf("container %s…: labels %v, owner %+v", tc.id[:12], got.Labels, got.Owner)
		}
		if len(c.Notes) != 0 {
			t.Errorf("container %s…: notes %q", tc.id[:12], c.Notes)
		}
	}
}

func TestEnrichKeepsDeletedPods(t *testing.T) {
	// A Job's pod can be deleted while its core is still uploading.
	pod := newPod("report", 1, running("containerd://"+cid(1)))
	client := fakeClient(pod)
	w := start(t, Config{Client: client, LookupWait: 50 * time.Millisecond}, nil, true)
	if err := client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the deletion to reach the cache", func() bool { return len(w.pods.GetStore().List()) == 0 })
	c := crashIn(cid(1), "")
	w.Enrich(context.Background(), c)
	if c.Container.Pod != pod.Name || c.Container.Container != "app" {
		t.Errorf("crash of a deleted pod's container: %+v, notes %q", c.Container, c.Notes)
	}
}

func TestEnrichWaitsForTheStatus(t *testing.T) {
	// The collector can ship before the kubelet reports the container: the
	// pod is cached, its new container ID is not yet.
	pod := newPod("web", 1, running("containerd://"+cid(1)))
	client := fakeClient(pod)
	w := start(t, Config{Client: client, LookupWait: time.Minute}, nil, true)

	c := crashIn(cid(2), string(pod.UID))
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Enrich(context.Background(), c)
	}()
	later := pod.DeepCopy()
	later.Status.ContainerStatuses = []corev1.ContainerStatus{restarted(running("containerd://"+cid(3)), "containerd://"+cid(2), 134, "Error", t0)}
	if _, err := client.CoreV1().Pods(pod.Namespace).UpdateStatus(context.Background(), later, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	<-done
	if c.Container.Container != "app" || c.Container.Pod != pod.Name || c.Container.Runtime != "containerd" {
		t.Errorf("enriched before the status arrived: %+v, notes %q", c.Container, c.Notes)
	}
}

// enrichReturns enriches c, failing the test with blocked if Enrich has
// not returned within 30 seconds.
func enrichReturns(t *testing.T, w *Watcher, c *corepipe.Crash, blocked string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Enrich(context.Background(), c)
	}()
	select {
	case <-done:
	case <-time.After(testkit.WaitDeadline):
		t.Fatal(blocked)
	}
}

func TestEnrichPodOnlyWhenContainerUnknown(t *testing.T) {
	pod := newPod("web", 1, running("containerd://"+cid(1)))
	w := start(t, Config{Client: fakeClient(pod), LookupWait: 20 * time.Millisecond}, nil, true)
	c := crashIn(cid(9), string(pod.UID))
	w.Enrich(context.Background(), c)
	got := c.Container
	if got.ID != cid(9) || got.Pod != pod.Name || got.Namespace != "shop" || got.Owner == nil || got.Container != "" {
		t.Errorf("pod-level metadata: %+v", got)
	}
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "not (yet) in the status of pod shop/"+pod.Name) {
		t.Errorf("notes %q", c.Notes)
	}
}

// TestEnrichAPIServerDown checks that enrichment returns with what it has
// when the API server cannot be reached: never synced (a failing server, a
// closed port), or gone after the pods were cached.
func TestEnrichAPIServerDown(t *testing.T) {
	const wait = 100 * time.Millisecond
	check := func(t *testing.T, w *Watcher, c *corepipe.Crash) {
		t.Helper()
		enrichReturns(t, w, c, "Enrich blocked while the API server is down")
	}

	t.Run("list fails", func(t *testing.T) {
		client := fakeClient(newPod("web", 1, running("containerd://"+cid(1))))
		client.PrependReactor("list", "pods", func(ktesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("dial tcp 10.96.0.1:443: connect: connection refused")
		})
		w := start(t, Config{Client: client, LookupWait: wait}, nil, false)
		c := crashIn(cid(1), "")
		check(t, w, c)
		if c.Container.ID != cid(1) || c.Container.Pod != "" {
			t.Errorf("container %+v", c.Container)
		}
		if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "could not be listed") {
			t.Errorf("notes %q", c.Notes)
		}
	})

	t.Run("closed port", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		client, err := kubernetes.NewForConfig(&rest.Config{Host: "http://" + addr, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		w := start(t, Config{Client: client, LookupWait: wait}, nil, false)
		c := crashIn(cid(1), "1f0e3dad-9990-4c2a-8a2e-000000000001")
		c.Container.Runtime = "containerd"
		check(t, w, c)
		want := corepipe.Container{ID: cid(1), Runtime: "containerd", PodUID: "1f0e3dad-9990-4c2a-8a2e-000000000001"}
		if c.Container.ID != want.ID || c.Container.Runtime != want.Runtime || c.Container.PodUID != want.PodUID || c.Container.Pod != "" {
			t.Errorf("container %+v, want the collector's %+v", c.Container, want)
		}
		if len(c.Notes) != 1 {
			t.Errorf("notes %q", c.Notes)
		}
	})

	t.Run("down after sync", func(t *testing.T) {
		pod := newPod("web", 1, running("containerd://"+cid(1)))
		client := fakeClient(pod)
		var live *watch.RaceFreeFakeWatcher
		down := make(chan struct{})
		client.PrependReactor("list", "pods", func(ktesting.Action) (bool, runtime.Object, error) {
			select {
			case <-down:
				return true, nil, errors.New("connection refused")
			default:
				return false, nil, nil
			}
		})
		client.PrependWatchReactor("pods", func(ktesting.Action) (bool, watch.Interface, error) {
			select {
			case <-down:
				return true, nil, errors.New("connection refused")
			default:
			}
			live = watch.NewRaceFreeFake()
			return true, live, nil
		})
		w := start(t, Config{Client: client, LookupWait: wait}, nil, true)
		testkit.WaitFor(t, "the watch", func() bool { return len(client.Actions()) >= 2 })
		close(down)
		live.Stop()

		c := crashIn(cid(1), "")
		check(t, w, c)
		if c.Container.Pod != pod.Name || c.Container.Container != "app" || len(c.Notes) != 0 {
			t.Errorf("from the cache: %+v, notes %q", c.Container, c.Notes)
		}
		c = crashIn(cid(7), string(pod.UID))
		check(t, w, c)
		if c.Container.Pod != pod.Name || c.Container.Container != "" || len(c.Notes) != 1 {
			t.Errorf("unknown container of a cached pod: %+v, notes %q", c.Container, c.Notes)
		}
	})
}

func TestWatchesOnlyItsNode(t *testing.T) {
	client := fakeClient()
	start(t, Config{Client: client}, nil, true)
	var selectors []string
	for _, a := range client.Actions() {
		if a.GetVerb() != "list" && a.GetVerb() != "watch" {
			t.Errorf("unexpected API call %s %s", a.GetVerb(), a.GetResource().Resource)
			continue
		}
		if a.GetResource() != (schema.GroupVersionResource{Version: "v1", Resource: "pods"}) {
			t.Errorf("watches %v", a.GetResource())
		}
		var fs string
		switch a := a.(type) {
		case ktesting.ListActionImpl:
			fs = a.ListOptions.FieldSelector
		case ktesting.WatchActionImpl:
			fs = a.WatchRestrictions.Fields.String()
		}
		selectors = append(selectors, a.GetVerb()+" "+fs)
	}
	if len(selectors) == 0 {
		t.Fatal("no list or watch")
	}
	for _, s := range selectors {
		if !strings.HasSuffix(s, " spec.nodeName="+testNode) {
			t.Errorf("%q: not restricted to the node", s)
		}
	}
}

func TestSaysWhenListed(t *testing.T) {
	sink := &testkit.Messages{}
	start(t, Config{Client: fakeClient(newPod("web", 1, running("containerd://"+cid(1)))), Logger: slogOf(sink)}, nil, true)
	testkit.WaitFor(t, "the log line", func() bool { return sink.Count("watching the pods of this node") == 1 })
}

func TestEnrichByPodUIDAlone(t *testing.T) {
	// A cgroup that names the pod but no container: nothing to wait for.
	pod := newPod("web", 1, running("containerd://"+cid(1)))
	w := start(t, Config{Client: fakeClient(pod), LookupWait: time.Hour}, nil, true)
	c := crashIn("", string(pod.UID))
	enrichReturns(t, w, c, "Enrich waited for a container ID it was never given")
	if c.Container.Pod != pod.Name || c.Container.Namespace != "shop" || len(c.Notes) != 1 {
		t.Errorf("container %+v, notes %q", c.Container, c.Notes)
	}
}
