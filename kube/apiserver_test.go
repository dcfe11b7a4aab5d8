package kube

// Tests against a real API server (internal/kubetest), for what the fake
// clientset cannot show: field selectors (the fake ignores them), status
// writes through the status subresource with the server's validation and
// its second-precision timestamps, UID preconditions on patches, event
// validation, and a watch that breaks when the server dies and resumes or
// relists when it is back. The test plays the kubelet, writing pod status
// itself; nothing else runs in the cluster.

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/kubetest"
)

// cluster is a real API server with namespace "shop", an admin client for
// the test (the kubelet's part) and another for the watcher.
type cluster struct {
	s       *kubetest.Server
	kubelet kubernetes.Interface
	agent   kubernetes.Interface
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	s := kubetest.Start(t)
	agent, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{s: s, kubelet: s.Client(), agent: agent}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	if _, err := c.kubelet.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// createPod creates pod (newPod's, whose UID and timestamps the server
// replaces) and, as the kubelet would once it ran it, sets its container
// statuses; it returns the pod as stored.
func (c *cluster) createPod(t *testing.T, pod *corev1.Pod, statuses ...corev1.ContainerStatus) *corev1.Pod {
	t.Helper()
	pod = pod.DeepCopy()
	pod.UID, pod.CreationTimestamp, pod.Status = "", metav1.Time{}, corev1.PodStatus{}
	created, err := c.kubelet.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	if len(statuses) == 0 {
		return created
	}
	return c.setStatuses(t, created, statuses...)
}

// serviceAccount is a client of service account corepipe/name, bound to a
// cluster role of its own with rules only: what the chart grants it.
func (c *cluster) serviceAccount(t *testing.T, name string, rules []rbacv1.PolicyRule) kubernetes.Interface {
	t.Helper()
	client, err := kubernetes.NewForConfig(c.s.Grant("corepipe", name, rules))
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// setStatuses writes the container statuses of pod through the status
// subresource, as the kubelet does, again on a conflict: the agent's
// annotation can change the pod between the read and the write.
func (c *cluster) setStatuses(t *testing.T, pod *corev1.Pod, statuses ...corev1.ContainerStatus) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pods := c.kubelet.CoreV1().Pods(pod.Namespace)
	var updated *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.Phase = corev1.PodRunning
		cur.Status.ContainerStatuses = statuses
		for _, cs := range statuses {
			if cs.State.Terminated != nil && cur.Spec.RestartPolicy == corev1.RestartPolicyNever {
				cur.Status.Phase = corev1.PodFailed
			}
		}
		updated, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("update status of pod %s: %v", pod.Name, err)
	}
	return updated
}

// again is cs restarted once more: its run raw ended with exit and reason.
func again(cs corev1.ContainerStatus, next, raw string, exit int32, reason string, finished time.Time) corev1.ContainerStatus {
	out := restarted(running(next), raw, exit, reason, finished)
	out.RestartCount = cs.RestartCount + 1
	return out
}

// now is the time of a termination the test reports: recent, so the watcher
// records it, and whole seconds, as the API server stores times.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

// enrich runs Enrich on a crash the collector found in container id.
func enrich(t *testing.T, w *Watcher, id string) *corepipe.Crash {
	t.Helper()
	c := crashIn(id, "")
	w.Enrich(context.Background(), c)
	return c
}

func TestRealServerEnrich(t *testing.T) {
	c := startCluster(t)
	web := c.createPod(t, newPod("web", 1), restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 2, "Error", now()))
	// The same container ID on another node's pod: only the field selector
	// keeps it out of this node's cache (the fake clientset ignores it).
	elsewhere := newPod("db", 2)
	elsewhere.Spec.NodeName = "node-b"
	c.createPod(t, elsewhere, running("containerd://"+cid(3)))
	w := start(t, Config{Client: c.agent, LookupWait: 30 * time.Second}, nil, true)

	if keys := w.pods.GetStore().ListKeys(); len(keys) != 1 || keys[0] != "shop/"+web.Name {
		t.Errorf("cached pods %q, want only shop/%s", keys, web.Name)
	}
	for _, tc := range []struct{ id, what string }{{cid(1), "the run that crashed"}, {cid(2), "the current run"}} {
		got := enrich(t, w, tc.id).Container
		want := corepipe.Container{ID: tc.id, Runtime: "containerd", Namespace: "shop", Pod: web.Name, PodUID: string(web.UID),
			Container: "app", Image: "registry.example/shop/web:1.2", ImageID: web.Status.ContainerStatuses[0].ImageID}
		if got.ID != want.ID || got.Runtime != want.Runtime || got.Namespace != want.Namespace || got.Pod != want.Pod ||
			got.PodUID != want.PodUID || got.Container != want.Container || got.Image != want.Image || got.ImageID != want.ImageID {
			t.Errorf("%s: container %+v, want %+v", tc.what, got, want)
		}
		if got.Owner == nil || *got.Owner != (corepipe.Owner{Kind: "Deployment", Name: "web"}) || got.Labels["app"] != "web" {
			t.Errorf("%s: owner %+v, labels %v", tc.what, got.Owner, got.Labels)
		}
	}
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	got := crashIn(cid(3), "")
	w.Enrich(short, got)
	if got.Container.Pod != "" || len(got.Notes) != 1 || !strings.Contains(got.Notes[0], "not among this node's pods") {
		t.Errorf("another node's container: %+v, notes %q", got.Container, got.Notes)
	}

	t.Run("status reported after the crash", func(t *testing.T) {
		// The core of a container's first run can arrive before the kubelet
		// has written the container's ID into the status: Enrich waits for
		// the watch to bring it.
		cart := c.createPod(t, newPod("cart", 3))
		got := make(chan *corepipe.Crash)
		go func() { got <- enrich(t, w, cid(5)) }()
		select {
		case crash := <-got:
			t.Fatalf("Enrich returned before the status named the container: %+v, notes %q", crash.Container, crash.Notes)
		case <-time.After(100 * time.Millisecond):
		}
		c.setStatuses(t, cart, running("containerd://"+cid(5)))
		if crash := <-got; crash.Container.Pod != cart.Name || crash.Container.Container != "app" || len(crash.Notes) != 0 {
			t.Errorf("container %+v, notes %q", crash.Container, crash.Notes)
		}
	})

	t.Run("pod deleted", func(t *testing.T) {
		// A Job's pod can be gone before its core is shipped.
		if err := c.kubelet.CoreV1().Pods("shop").Delete(context.Background(), web.Name, *metav1.NewDeleteOptions(0)); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, "the deletion to reach the cache", func() bool {
			_, ok, _ := w.pods.GetStore().GetByKey("shop/" + web.Name)
			return !ok
		})
		if got := enrich(t, w, cid(1)).Container; got.Pod != web.Name || got.PodUID != string(web.UID) || got.Container != "app" {
			t.Errorf("deleted pod's container: %+v", got)
		}
	})
}

// recordedCrash waits for the next record and checks that it is container
// id's run in pod ending with exit code and restart count.
func recordedCrash(t *testing.T, rec *recorder, pod *corev1.Pod, id string, exit, restarts int, finished time.Time) *corepipe.Crash {
	t.Helper()
	c := rec.next(t)
	tr := c.Termination
	if c.Container.ID != id || c.Container.Pod != pod.Name || c.Container.PodUID != string(pod.UID) || c.Container.Container != "app" {
		t.Errorf("recorded container %+v, want %s of pod %s", c.Container, id, pod.Name)
	}
	if tr == nil || tr.ExitCode != exit || tr.RestartCount != restarts || !tr.FinishedAt.Equal(finished) {
		t.Fatalf("termination %+v, want exit code %d, %d restarts, finished at %v", tr, exit, restarts, finished)
	}
	if !c.CapturedAt.Equal(finished) || c.Node != testNode {
		t.Errorf("captured at %v on %q", c.CapturedAt, c.Node)
	}
	return c
}

// drained waits until the watcher has nothing pending, then checks that
// nothing more was recorded.
func drained(t *testing.T, w *Watcher, rec *recorder) {
	t.Helper()
	w.kick()
	testkit.WaitFor(t, "the pending terminations to drain", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.pending) == 0
	})
	rec.none(t)
}

func TestRealServerRecordsTermination(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	web := c.createPod(t, newPod("web", 1), running("containerd://"+cid(1)))
	rec := newRecorder()
	sink := &testkit.Messages{}
	w := start(t, Config{Client: c.agent, UIURL: "https://crashes.example", Logger: slogOf(sink)}, rec, true)

	// The kubelet restarts the container after its first run exited 2.
	first := now()
	crashed := restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 2, "Error", first)
	web = c.setStatuses(t, web, crashed)
	rec1 := recordedCrash(t, rec, web, cid(1), 2, 1, first)
	if rec1.Termination.Reason != "Error" || rec1.Core.Dropped != "no core: the program exited with code 2 itself; only a signal dumps core" {
		t.Errorf("reason %q, dropped %q", rec1.Termination.Reason, rec1.Core.Dropped)
	}

	// The agent points the pod at the record: an annotation (a merge patch
	// with the pod's UID as precondition) and an event the server accepts.
	testkit.WaitFor(t, "the pod's annotation", func() bool {
		p, err := c.kubelet.CoreV1().Pods("shop").Get(ctx, web.Name, metav1.GetOptions{})
		return err == nil && p.Annotations[AnnotationCrashID] == rec1.ID &&
			p.Annotations[AnnotationCrashURL] == "https://crashes.example/crashes/"+rec1.ID
	})
	testkit.WaitFor(t, "the pod's event", func() bool {
		evs, err := c.kubelet.CoreV1().Events("shop").List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", string(web.UID)).String()})
		if err != nil {
			t.Fatal(err)
		}
		if n := sink.Count("pod event"); n != 0 {
			t.Fatalf("%d events refused", n)
		}
		return len(evs.Items) == 1 && evs.Items[0].Reason == ReasonCrashed && strings.Contains(evs.Items[0].Message, rec1.ID)
	})

	// The kubelet writes the same termination again with other changes (the
	// annotation above was one more update): nothing is recorded twice.
	ready := crashed
	ready.Ready = false
	web = c.setStatuses(t, web, ready)

	// Its second run is OOM killed, and a Job-like pod that is never
	// restarted fails: its current state is the termination.
	second := now()
	web = c.setStatuses(t, web, again(crashed, "containerd://"+cid(3), "containerd://"+cid(2), 137, "OOMKilled", second))
	rec2 := recordedCrash(t, rec, web, cid(2), 137, 2, second)
	if rec2.Termination.Reason != "OOMKilled" || rec2.Signal.Name != "SIGKILL" || rec2.ID == rec1.ID {
		t.Errorf("second record %s: %+v, signal %+v", rec2.ID, rec2.Termination, rec2.Signal)
	}
	job := newPod("backup", 2)
	job.Spec.RestartPolicy = corev1.RestartPolicyNever
	job.OwnerReferences[0].Kind, job.OwnerReferences[0].Name = "Job", "backup-29034720"
	ended := now()
	job = c.createPod(t, job, corev1.ContainerStatus{
		Name: "app", ContainerID: "containerd://" + cid(4), Image: "registry.example/shop/backup:1.2",
		ImageID: "registry.example/shop/backup@sha256:" + strings.Repeat("cd", 32),
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 2, Reason: "Error", ContainerID: "containerd://" + cid(4),
			StartedAt: metav1.NewTime(ended.Add(-time.Minute)), FinishedAt: metav1.NewTime(ended)}},
	})
	if got := recordedCrash(t, rec, job, cid(4), 2, 0, ended); got.Container.Owner == nil || got.Container.Owner.Kind != "Job" {
		t.Errorf("owner %+v", got.Container.Owner)
	}
	drained(t, w, rec)
}

func TestRealServerDownAndBack(t *testing.T) {
	c := startCluster(t)
	web := c.createPod(t, newPod("web", 1), running("containerd://"+cid(1)))
	gone := c.createPod(t, newPod("batch", 2), running("containerd://"+cid(9)))
	rec := newRecorder()
	sink := &testkit.Messages{}
	w := start(t, Config{Client: c.agent, Logger: slogOf(sink)}, rec, true)

	first := now()
	crashed := restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 2, "Error", first)
	web = c.setStatuses(t, web, crashed)
	recordedCrash(t, rec, web, cid(1), 2, 1, first)

	c.s.Stop()
	// The cache still answers while the API server is down.
	if got := enrich(t, w, cid(2)).Container; got.Pod != web.Name || got.Container != "app" {
		t.Errorf("with the API server down: %+v", got)
	}
	c.s.Restart()

	// Before the watcher is back (its reflector backs off while the server
	// is down), the kubelet reports a second crash of web, a new pod
	// crashes, and another pod is deleted.
	second := now()
	web = c.setStatuses(t, web, again(crashed, "containerd://"+cid(3), "containerd://"+cid(2), 2, "Error", second))
	cart := c.createPod(t, newPod("cart", 3), restarted(running("containerd://"+cid(6)), "containerd://"+cid(5), 1, "Error", second))
	if err := c.kubelet.CoreV1().Pods("shop").Delete(context.Background(), gone.Name, *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}

	// Nothing lost: each new termination is recorded once, whichever way
	// the watcher catches up (resumed watch or relist), and the first one
	// is not recorded again.
	got := map[string]*corepipe.Crash{}
	for range 2 {
		r := rec.next(t)
		got[r.Container.ID] = r
	}
	if r := got[cid(2)]; r == nil || r.Container.Pod != web.Name || r.Termination.RestartCount != 2 || !r.Termination.FinishedAt.Equal(second) {
		t.Errorf("web's second crash: %+v", r)
	}
	if r := got[cid(5)]; r == nil || r.Container.Pod != cart.Name || r.Container.PodUID != string(cart.UID) || r.Termination.ExitCode != 1 {
		t.Errorf("cart's crash: %+v", r)
	}
	testkit.WaitFor(t, "the deletion to reach the cache", func() bool {
		_, ok, _ := w.pods.GetStore().GetByKey("shop/" + gone.Name)
		return !ok
	})
	if got := enrich(t, w, cid(9)).Container; got.Pod != gone.Name || got.PodUID != string(gone.UID) {
		t.Errorf("container of the pod deleted while the watcher was away: %+v", got)
	}
	drained(t, w, rec)
	if n := sink.Count("termination recorded"); n != 3 {
		t.Errorf("%d terminations recorded, want 3", n)
	}
}

func TestRealServerStartsWhileDown(t *testing.T) {
	// An agent that starts during a control plane outage ships crashes
	// with what the collector found, then catches up once it can list.
	c := startCluster(t)
	finished := now()
	web := c.createPod(t, newPod("web", 1), restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 2, "Error", finished))
	c.s.Stop()
	rec := newRecorder()
	w := start(t, Config{Client: c.agent, LookupWait: 100 * time.Millisecond}, rec, false)
	if got := enrich(t, w, cid(1)); got.Container.Pod != "" || len(got.Notes) != 1 || !strings.Contains(got.Notes[0], "could not be listed") {
		t.Errorf("before the first listing: %+v, notes %q", got.Container, got.Notes)
	}

	c.s.Restart()
	testkit.WaitFor(t, "the pod informer to sync", w.Synced)
	recordedCrash(t, rec, web, cid(1), 2, 1, finished)
	if got := enrich(t, w, cid(2)).Container; got.Pod != web.Name {
		t.Errorf("after the first listing: %+v", got)
	}
	drained(t, w, rec)
}

// agentRules are the agent's ClusterRole rules as the chart grants them
// (deploy's TestChartRBACIsLeastPrivilege holds the chart to exactly these).
var agentRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
}

func TestRealServerAgentRBAC(t *testing.T) {
	// The chart's least privilege is enough for everything the watcher
	// does: a call it needed beyond it would be refused here and logged.
	c := startCluster(t)
	ctx := context.Background()
	agent := c.serviceAccount(t, "corepipe-agent", agentRules)

	web := c.createPod(t, newPod("web", 1), running("containerd://"+cid(1)))
	rec := newRecorder()
	sink := &testkit.Messages{}
	w := start(t, Config{Client: agent, Logger: slogOf(sink)}, rec, true)
	// A core of the running container, then its termination.
	core := &corepipe.Crash{ID: corepipe.NewID(time.Now()), CapturedAt: time.Now(),
		Container: &corepipe.Container{ID: cid(1), PodUID: string(web.UID)}}
	w.Enrich(ctx, core)
	w.Shipped(ctx, core)
	finished := now()
	web = c.setStatuses(t, web, restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 2, "Error", finished))
	term := recordedCrash(t, rec, web, cid(1), 2, 1, finished)
	if term.Termination.CoreID != core.ID {
		t.Errorf("termination links core %q, want %s", term.Termination.CoreID, core.ID)
	}

	testkit.WaitFor(t, "the core's event", func() bool {
		evs, err := c.kubelet.CoreV1().Events("shop").List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("reason", ReasonCoreDumped).String()})
		return err == nil && len(evs.Items) == 1 && strings.Contains(evs.Items[0].Message, core.ID)
	})
	p, err := c.kubelet.CoreV1().Pods("shop").Get(ctx, web.Name, metav1.GetOptions{})
	if err != nil || p.Annotations[AnnotationCrashID] != core.ID {
		t.Errorf("pod annotation %q, want the core's %s: %v", p.Annotations[AnnotationCrashID], core.ID, err)
	}
	for _, msg := range []string{"annotate pod", "pod event"} {
		if n := sink.Count(msg); n != 0 {
			t.Errorf("%d times %q: refused with the chart's rules", n, msg)
		}
	}
}

func TestRealServerAnnotationSkipsReplacedPod(t *testing.T) {
	// A StatefulSet replaces a pod under the same name: a crash of the old
	// one must not be pinned on the new one. The pod's UID in the patch is
	// a precondition only a real API server enforces.
	c := startCluster(t)
	ctx := context.Background()
	pod := newPod("db", 1)
	pod.Name = "db-0"
	pod.OwnerReferences[0].Kind, pod.OwnerReferences[0].Name = "StatefulSet", "db"
	old := c.createPod(t, pod, running("containerd://"+cid(1)))
	sink := &testkit.Messages{}
	w := start(t, Config{Client: c.agent, Logger: slogOf(sink)}, nil, true)
	core := &corepipe.Crash{ID: corepipe.NewID(time.Now()), CapturedAt: time.Now(),
		Container: &corepipe.Container{ID: cid(1), PodUID: string(old.UID)}}
	w.Enrich(ctx, core)

	if err := c.kubelet.CoreV1().Pods("shop").Delete(ctx, old.Name, *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}
	replaced := c.createPod(t, pod, running("containerd://"+cid(2)))
	testkit.WaitFor(t, "the new pod in the cache", func() bool { return w.podByUID(string(replaced.UID)) != nil })
	w.Shipped(ctx, core)

	testkit.WaitFor(t, "the event on the old pod", func() bool {
		evs, err := c.kubelet.CoreV1().Events("shop").List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", string(old.UID)).String()})
		return err == nil && len(evs.Items) == 1
	})
	if n := sink.Count("annotate pod"); n != 1 {
		t.Errorf("%d refused annotations logged, want 1", n)
	}
	p, err := c.kubelet.CoreV1().Pods("shop").Get(ctx, replaced.Name, metav1.GetOptions{})
	if err != nil || p.UID != replaced.UID || p.Annotations[AnnotationCrashID] != "" {
		t.Errorf("the new pod %s got the old pod's crash: annotations %v, %v", p.UID, p.Annotations, err)
	}
}
