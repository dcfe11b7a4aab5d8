package kube

// A kernel panic's node and pods, against a real API server: the test
// plays the kubelet (pod status, deletions) and the node lifecycle
// controller (the Node's Ready condition going Unknown).

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
	"k8s.io/client-go/rest"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/kubetest"
)

// ReceiverRules are the netconsole receiver's ClusterRole rules as the
// chart grants them (deploy's TestChartRBACIsLeastPrivilege holds the
// chart to exactly these).
var receiverRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
}

// receiverClient is a client of a service account with receiverRules only.
func (c *cluster) receiverClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	return c.serviceAccount(t, "corepipe-kpanic", receiverRules)
}

func startPanicWatcher(t *testing.T, cfg PanicConfig) *PanicWatcher {
	t.Helper()
	w, err := NewPanicWatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testkit.WaitFor(t, "nodes and pods listed", w.Synced)
	return w
}

// onNode is newPod on node.
func onNode(name string, uid int, node string) *corev1.Pod {
	p := newPod(name, uid)
	p.Spec.NodeName = node
	return p
}

// completed is container "app" of run raw, ended well at finished.
func completed(raw string, finished time.Time) corev1.ContainerStatus {
	cs := running(raw)
	cs.Ready = false
	cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", ContainerID: raw,
		StartedAt: metav1.NewTime(finished.Add(-time.Minute)), FinishedAt: metav1.NewTime(finished)}}
	return cs
}

func podEvents(t *testing.T, client kubernetes.Interface, ns, reason string) []corev1.Event {
	t.Helper()
	evs, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("reason", reason).String()})
	if err != nil {
		t.Fatal(err)
	}
	return evs.Items
}

func TestRealServerKernelPanicTellsPods(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	c.s.CreateNode("node-a", "127.0.0.1", "boot-1")
	c.s.CreateNode("node-b", "127.0.0.2", "boot-2")
	web := c.createPod(t, onNode("web", 1, "node-a"), running("containerd://"+cid(1)))
	// Terminating: deleted with a grace period no kubelet will end.
	leaving := c.createPod(t, onNode("leaving", 2, "node-a"), running("containerd://"+cid(2)))
	if err := c.kubelet.CoreV1().Pods("shop").Delete(ctx, leaving.Name, *metav1.NewDeleteOptions(300)); err != nil {
		t.Fatal(err)
	}
	gone := c.createPod(t, onNode("gone", 3, "node-a"), running("containerd://"+cid(3)))
	batch := onNode("batch", 4, "node-a")
	batch.Spec.RestartPolicy = corev1.RestartPolicyNever
	c.createPod(t, batch, completed("containerd://"+cid(4), now().Add(-time.Hour)))
	elsewhere := c.createPod(t, onNode("db", 5, "node-b"), running("containerd://"+cid(5)))

	sink := &testkit.Messages{}
	w := startPanicWatcher(t, PanicConfig{Client: c.receiverClient(t), UIURL: "https://corepipe.example/", Logger: slogOf(sink)})
	at := time.Now()
	// The pod GC deletes a dead node's pods before its panic is recorded.
	if err := c.kubelet.CoreV1().Pods("shop").Delete(ctx, gone.Name, *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the deletion seen", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.deleted) == 1
	})

	if got := w.NodeOf(ctx, "127.0.0.1:6665"); got != "node-a" {
		t.Errorf("node of 127.0.0.1:6665 is %q, want node-a", got)
	}
	if got := w.NodeOf(ctx, "127.0.0.9:6665"); got != "" {
		t.Errorf("node of an address no Node has is %q", got)
	}
	pods, err := w.PodsOn(ctx, "node-a", at)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods {
		names = append(names, p.Pod)
	}
	if want := []string{gone.Name, leaving.Name, web.Name}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("pods on node-a at the panic %q, want %q (not the finished batch pod, not node-b's)", names, want)
	}

	k := &corepipe.KernelPanic{Message: "Fatal exception", FirstBug: "BUG: kernel NULL pointer dereference, address: 0000000000000000",
		CallTrace: []corepipe.KernelFrame{{Function: "mydrv_probe", Offset: "0x1a", Size: "0x30", Module: "mydrv"}}}
	crash := &corepipe.Crash{ID: corepipe.KernelPanicID("node-a", k), Node: "node-a", CapturedAt: at, Pods: pods}
	w.Recorded(ctx, crash, corepipe.KernelTitle(k))
	// Until the node is seen dead, nothing is written.
	w.confirmPending(ctx)
	if p, _ := c.kubelet.CoreV1().Pods("shop").Get(ctx, web.Name, metav1.GetOptions{}); p.Annotations[AnnotationTerminationReason] != "" {
		t.Fatalf("annotated while the node is Ready: %q", p.Annotations[AnnotationTerminationReason])
	}

	c.s.UpdateNodeStatus("node-a", kubetest.NodeLost)
	url := "https://corepipe.example/crashes/" + crash.ID
	want := "KernelPanic: Fatal exception (BUG: kernel NULL pointer dereference, address: 0000000000000000) in mydrv_probe [mydrv] (corepipe crash " + crash.ID + ", " + url + ")"
	for _, name := range []string{web.Name, leaving.Name} {
		testkit.WaitFor(t, name+" annotated", func() bool {
			p, err := c.kubelet.CoreV1().Pods("shop").Get(ctx, name, metav1.GetOptions{})
			return err == nil && p.Annotations[AnnotationTerminationReason] != ""
		})
		p, _ := c.kubelet.CoreV1().Pods("shop").Get(ctx, name, metav1.GetOptions{})
		if got := p.Annotations[AnnotationTerminationReason]; got != want {
			t.Errorf("%s: reason %q\nwant %q", name, got, want)
		}
		if p.Annotations[AnnotationCrashID] != crash.ID || p.Annotations[AnnotationCrashURL] != url {
			t.Errorf("%s: annotations %v", name, p.Annotations)
		}
	}
	testkit.WaitFor(t, "the node's event", func() bool { return len(podEvents(t, c.kubelet, "default", ReasonKernelPanic)) == 1 })
	// A replay, or a second receiver, tells nobody twice.
	w.Recorded(ctx, crash, corepipe.KernelTitle(k))
	testkit.WaitFor(t, "the replay handled", func() bool { return sink.Count("kernel panic confirmed: pods told") == 2 })

	evs := podEvents(t, c.kubelet, "shop", ReasonKernelPanic)
	got := map[string]int{}
	for _, e := range evs {
		got[e.InvolvedObject.Name]++
		if e.Type != corev1.EventTypeWarning || e.Message != want {
			t.Errorf("event on %s: %s %q", e.InvolvedObject.Name, e.Type, e.Message)
		}
	}
	if len(got) != 2 || got[web.Name] != 1 || got[leaving.Name] != 1 {
		t.Errorf("events per pod %v, want one on each existing pod of node-a", got)
	}
	node := podEvents(t, c.kubelet, "default", ReasonKernelPanic)
	if len(node) != 1 || node[0].InvolvedObject.Kind != "Node" || node[0].InvolvedObject.Name != "node-a" || !strings.Contains(node[0].Message, "3 pods were on the node") {
		t.Errorf("node events %+v", node)
	}
	if p, _ := c.kubelet.CoreV1().Pods("shop").Get(ctx, elsewhere.Name, metav1.GetOptions{}); len(p.Annotations) != 0 {
		t.Errorf("node-b's pod annotated: %v", p.Annotations)
	}
	for _, msg := range []string{"kernel panic: annotate pod", "kernel panic: pod event", "kernel panic: node event"} {
		if n := sink.Count(msg); n != 0 {
			t.Errorf("%d times %q with the chart's rules", n, msg)
		}
	}
}

func TestRealServerSpoofedPanicTellsNobody(t *testing.T) {
	// netconsole is unauthenticated UDP: a panic "from" a node that stays
	// Ready, or from no node at all, annotates nothing. A reboot (a new
	// boot ID) confirms as well as Ready going Unknown.
	c := startCluster(t)
	ctx := context.Background()
	c.s.CreateNode("node-a", "127.0.0.1", "boot-1")
	c.s.CreateNode("node-c", "127.0.0.3", "boot-3")
	web := c.createPod(t, onNode("web", 1, "node-a"), running("containerd://"+cid(1)))
	db := c.createPod(t, onNode("db", 2, "node-c"), running("containerd://"+cid(2)))
	sink := &testkit.Messages{}
	w := startPanicWatcher(t, PanicConfig{Client: c.agent, ConfirmWait: time.Second, Logger: slogOf(sink)})

	at := time.Now()
	panicOf := func(node string) *corepipe.Crash {
		k := &corepipe.KernelPanic{Message: "sysrq triggered crash"}
		pods, err := w.PodsOn(ctx, node, at)
		if err != nil {
			t.Fatal(err)
		}
		return &corepipe.Crash{ID: corepipe.KernelPanicID(node, k), Node: node, CapturedAt: at, Pods: pods}
	}
	w.Recorded(ctx, panicOf("10.9.9.9"), "kernel panic: sysrq triggered crash")
	if n := sink.Count("kernel panic from no Node of this cluster (no such name or InternalIP): its pods are not told"); n != 1 {
		t.Errorf("a panic from no node: said %d times", n)
	}
	w.Recorded(ctx, panicOf("node-a"), "kernel panic: sysrq triggered crash")
	testkit.WaitFor(t, "the wait for node-a given up", func() bool {
		return sink.Count("kernel panic not confirmed: its node stayed Ready with the same boot ID; its pods are not told") == 1
	})
	if p, _ := c.kubelet.CoreV1().Pods("shop").Get(ctx, web.Name, metav1.GetOptions{}); len(p.Annotations) != 0 {
		t.Errorf("a spoofed panic annotated %s: %v", web.Name, p.Annotations)
	}
	if evs := podEvents(t, c.kubelet, "", ReasonKernelPanic); len(evs) != 0 {
		t.Errorf("a spoofed panic made %d events", len(evs))
	}

	// The default wait, so that the reboot is seen in time on a busy machine.
	w = startPanicWatcher(t, PanicConfig{Client: c.agent, Logger: slogOf(sink)})
	w.Recorded(ctx, panicOf("node-c"), "kernel panic: sysrq triggered crash")
	c.s.UpdateNodeStatus("node-c", func(n *corev1.Node) { n.Status.NodeInfo.BootID = "boot-4" })
	testkit.WaitFor(t, "node-c's pod annotated after its reboot", func() bool {
		p, err := c.kubelet.CoreV1().Pods("shop").Get(ctx, db.Name, metav1.GetOptions{})
		return err == nil && strings.HasPrefix(p.Annotations[AnnotationTerminationReason], "KernelPanic: sysrq triggered crash (corepipe crash ")
	})
}

func TestPanicWatcherAPIServerUnreachable(t *testing.T) {
	// No API server: one clear line, at once after the first wait, and the
	// panic is still recorded (the receiver records it without pods).
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sink := &testkit.Messages{}
	w, err := NewPanicWatcher(PanicConfig{Client: client, SyncWait: 200 * time.Millisecond, Logger: slogOf(sink)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if got := w.NodeOf(ctx, "127.0.0.1:6665"); got != "" {
		t.Errorf("node %q with no API server", got)
	}
	_, err = w.PodsOn(ctx, "node-a", time.Now())
	if err == nil || err.Error() != "the cluster's nodes and pods could not be listed (API server unreachable, or access denied)" {
		t.Errorf("PodsOn: %v", err)
	}
	w.Recorded(ctx, &corepipe.Crash{ID: "X", Node: "node-a"}, "kernel panic")
	if n := sink.Count("kernel panic: its pods are not told"); n != 1 {
		t.Errorf("said %d times that the pods are not told", n)
	}
}

func TestTerminationReasonBounded(t *testing.T) {
	id := corepipe.NewID(time.Now())
	long := "kernel panic: " + strings.Repeat("é", 600)
	got := TerminationReason(long, id, "https://ui/crashes/"+id)
	if len(got) > maxReasonLen || !strings.HasSuffix(got, "(corepipe crash "+id+", https://ui/crashes/"+id+")") || !strings.HasPrefix(got, "KernelPanic: éé") {
		t.Errorf("reason of %d bytes: %q", len(got), got)
	}
	if !strings.Contains(got, "…") || strings.ContainsRune(got, '\uFFFD') {
		t.Errorf("cut badly: %q", got)
	}
	if got := TerminationReason("kernel panic: Fatal\nexception", id, ""); got != "KernelPanic: Fatal exception (corepipe crash "+id+")" {
		t.Errorf("reason %q", got)
	}
}

func TestRealServerTerminationAfterPanicLinks(t *testing.T) {
	// After the reboot the kubelet reports the container it lost as exit
	// 255, Unknown: the agent's record of that end names the panic the pod
	// was told of.
	c := startCluster(t)
	id := corepipe.NewID(time.Now())
	pod := newPod("web", 1)
	pod.Annotations = map[string]string{AnnotationTerminationReason: TerminationReason("kernel panic: sysrq triggered crash", id, "https://ui/crashes/"+id)}
	web := c.createPod(t, pod, running("containerd://"+cid(1)))
	rec := newRecorder()
	start(t, Config{Client: c.agent}, rec, true)
	lost := now()
	web = c.setStatuses(t, web, restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 255, "Unknown", lost))
	got := recordedCrash(t, rec, web, cid(1), 255, 1, lost)
	if !strings.Contains(strings.Join(got.Notes, "\n"), "its node's kernel panicked: corepipe crash "+id+" ") {
		t.Errorf("notes %q name no panic %s", got.Notes, id)
	}
}
