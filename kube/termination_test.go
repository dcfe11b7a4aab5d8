package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
)

// freshClock starts the watcher's clock a few seconds after t0: the
// terminations of the tests are fresh.
func freshClock(w *Watcher) {
	start := time.Now()
	w.now = func() time.Time { return t0.Add(3*time.Second + time.Since(start)) }
}

// startAt is start with the watcher's clock set before it runs.
func startAt(t *testing.T, cfg Config, rec *recorder) *Watcher {
	t.Helper()
	return startWith(t, cfg, rec, true, freshClock)
}

// updates counts the informer's deliveries of pod updates, resyncs included.
func updates(t *testing.T, w *Watcher) func() int {
	var n atomicInt
	if _, err := w.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, _ any) { n.add() }}); err != nil {
		t.Fatal(err)
	}
	return n.get
}

func TestOOMKilledRecordedOnce(t *testing.T) {
	pod := newPod("web", 1, restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 137, "OOMKilled", t0))
	client := fakeClient(pod)
	rec := newRecorder()
	w := startAt(t, Config{Client: client, Resync: time.Second}, rec)
	seen := updates(t, w)

	c := rec.next(t)
	tr := c.Termination
	if tr == nil || tr.ExitCode != 137 || tr.Reason != "OOMKilled" || tr.Signal != 9 || tr.RestartCount != 1 || !tr.FinishedAt.Equal(t0) {
		t.Fatalf("termination %+v", tr)
	}
	if c.Signal != (corepipe.Signal{Number: 9, Name: "SIGKILL"}) {
		t.Errorf("signal %+v", c.Signal)
	}
	if c.Core.Dropped != "no core: OOM killed: SIGKILL never leaves a core" {
		t.Errorf("dropped %q", c.Core.Dropped)
	}
	if !corepipe.ValidID(c.ID) || !c.CapturedAt.Equal(t0) || c.Node != testNode || c.Schema != corepipe.ManifestSchema {
		t.Errorf("crash id %q, captured %v, node %q, schema %d", c.ID, c.CapturedAt, c.Node, c.Schema)
	}
	if got := c.Container; got.ID != cid(1) || got.Runtime != "containerd" || got.Pod != pod.Name || got.Container != "app" || got.Owner == nil {
		t.Errorf("container %+v", got)
	}
	if len(c.Notes) < 2 || !strings.Contains(c.Notes[0], "memory limit of 256Mi") || !strings.Contains(c.Notes[1], "128+9: killed by SIGKILL") {
		t.Errorf("notes %q", c.Notes)
	}

	// Resyncs and unrelated updates deliver the same status again.
	touched := pod.DeepCopy()
	touched.Labels["touched"] = "yes"
	if _, err := client.CoreV1().Pods(pod.Namespace).Update(context.Background(), touched, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "resyncs", func() bool { return seen() >= 3 })
	drained(t, w, rec)
}

func TestSegfaultWithoutCore(t *testing.T) {
	pod := newPod("web", 1, restarted(running("cri-o://"+cid(2)), "cri-o://"+cid(1), 139, "Error", t0))
	rec := newRecorder()
	// The watcher's clock is 3s past the end: LinkWait is over.
	startAt(t, Config{Client: fakeClient(pod), LinkWait: time.Second}, rec)
	c := rec.next(t)
	if c.Signal != (corepipe.Signal{Number: 11, Name: "SIGSEGV"}) || c.Termination.Signal != 11 || c.Termination.CoreID != "" {
		t.Errorf("signal %+v, termination %+v", c.Signal, c.Termination)
	}
	if !strings.HasPrefix(c.Core.Dropped, "no core: SIGSEGV should have dumped core but none reached the agent") {
		t.Errorf("dropped %q", c.Core.Dropped)
	}
	if c.Container.Runtime != "cri-o" || c.Container.ID != cid(1) {
		t.Errorf("container %+v", c.Container)
	}
}

func TestTerminationLinksItsCore(t *testing.T) {
	t.Run("core first", func(t *testing.T) {
		pod := newPod("web", 1, running("containerd://"+cid(1)))
		client := fakeClient(pod)
		rec := newRecorder()
		w := startAt(t, Config{Client: client, LinkWait: time.Hour}, rec)
		core := &corepipe.Crash{ID: corepipe.NewID(t0), CapturedAt: t0.Add(-time.Second),
			Container: &corepipe.Container{ID: cid(1), PodUID: string(pod.UID), Namespace: "shop", Pod: pod.Name, Container: "app"}}
		w.Shipped(context.Background(), core)

		crashed := pod.DeepCopy()
		crashed.Status.ContainerStatuses = []corev1.ContainerStatus{restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 139, "Error", t0)}
		if _, err := client.CoreV1().Pods(pod.Namespace).UpdateStatus(context.Background(), crashed, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		c := rec.next(t)
		if c.Termination.CoreID != core.ID || c.Core.Dropped != "no core: this is the container's termination; its core is crash "+core.ID {
			t.Errorf("core id %q, dropped %q", c.Termination.CoreID, c.Core.Dropped)
		}
	})
	t.Run("termination first", func(t *testing.T) {
		// A big core is still uploading when the kubelet reports the exit:
		// the record waits for it (LinkWait) instead of going out unlinked.
		pod := newPod("web", 1, restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 134, "Error", t0))
		rec := newRecorder()
		w := startAt(t, Config{Client: fakeClient(pod), LinkWait: time.Hour}, rec)
		testkit.WaitFor(t, "the termination to wait for its core", func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(w.pending) == 1
		})
		rec.none(t)
		core := &corepipe.Crash{ID: corepipe.NewID(t0), CapturedAt: t0,
			Container: &corepipe.Container{ID: cid(1), Namespace: "shop", Pod: pod.Name}}
		w.Shipped(context.Background(), core)
		c := rec.next(t)
		if c.Termination.CoreID != core.ID || c.Signal.Name != "SIGABRT" {
			t.Errorf("core id %q, signal %+v", c.Termination.CoreID, c.Signal)
		}
	})
}

func TestNotCrashes(t *testing.T) {
	completed := restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 0, "Completed", t0)
	old := restarted(running("containerd://"+cid(4)), "containerd://"+cid(3), 1, "Error", t0.Add(-48*time.Hour))
	stopping := newPod("api", 3, corev1.ContainerStatus{Name: "app", ContainerID: "containerd://" + cid(5),
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 143, Reason: "Error",
			ContainerID: "containerd://" + cid(5), FinishedAt: metav1.NewTime(t0)}}})
	stopping.DeletionTimestamp = new(metav1.NewTime(t0))
	elsewhere := newPod("db", 4, restarted(running("containerd://"+cid(7)), "containerd://"+cid(6), 137, "OOMKilled", t0))
	elsewhere.Spec.NodeName = "node-b"
	// The one real crash, recorded last, shows the others were passed over.
	crash := newPod("cart", 5, restarted(running("containerd://"+cid(9)), "containerd://"+cid(8), 2, "Error", t0))

	rec := newRecorder()
	startAt(t, Config{Client: fakeClient(newPod("web", 1, completed), newPod("jobs", 2, old), stopping, elsewhere, crash)}, rec)
	c := rec.next(t)
	if c.Container.ID != cid(8) || c.Termination.ExitCode != 2 || c.Signal.Number != 0 {
		t.Fatalf("recorded %+v %+v", c.Container, c.Termination)
	}
	if c.Core.Dropped != "no core: the program exited with code 2 itself; only a signal dumps core" {
		t.Errorf("dropped %q", c.Core.Dropped)
	}
	rec.none(t)
}

func TestRecordRetriedWhileQueueDown(t *testing.T) {
	pod := newPod("web", 1, restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 137, "OOMKilled", t0))
	rec := newRecorder()
	rec.fails = 1
	sink := &testkit.Messages{}
	w, err := New(Config{Client: fakeClient(pod), Node: testNode, Logger: slogOf(sink)})
	if err != nil {
		t.Fatal(err)
	}
	freshClock(w)
	rec.w = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, rec) }()
	defer func() { cancel(); <-done }()
	testkit.WaitFor(t, "the failed attempt", func() bool { return sink.Count("record termination") == 1 })
	if c := rec.next(t); c.Termination.Reason != "OOMKilled" {
		t.Errorf("termination %+v", c.Termination)
	}
}

func TestExitCodeNotes(t *testing.T) {
	for _, tc := range []struct {
		code   int32
		reason string
		want   string
	}{
		{1, "Error", "exit code 1: the program reported an error"},
		{2, "Error", "exit code 2: an unrecovered Go panic"},
		{126, "ContainerCannotRun", "exit code 126: the command was found but could not be executed"},
		{127, "ContainerCannotRun", "exit code 127: the command was not found"},
		{255, "Error", "exit code 255: an exit status out of range"},
		{134, "Error", "exit code 134 = 128+6: killed by SIGABRT (a Go program with GOTRACEBACK=crash"},
		{139, "Error", "exit code 139 = 128+11: killed by SIGSEGV (a segmentation fault in C or cgo code"},
		{143, "Error", "exit code 143 = 128+15: killed by SIGTERM"},
		{3, "Error", "exit code 3: chosen by the program"},
	} {
		pod := newPod("web", 1)
		st := &corev1.ContainerStateTerminated{ExitCode: tc.code, Reason: tc.reason}
		notes := explainExit(termination{pod: pod, status: corev1.ContainerStatus{Name: "app"}, state: st}, signalOf(st))
		if len(notes) != 1 || !strings.HasPrefix(notes[0], tc.want) {
			t.Errorf("exit %d: notes %q, want %q…", tc.code, notes, tc.want)
		}
	}
}

func TestTerminationID(t *testing.T) {
	pod := newPod("web", 1, restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 137, "OOMKilled", t0))
	ts := terminationsOf(pod)
	if len(ts) != 1 {
		t.Fatalf("%d terminations", len(ts))
	}
	id := terminationID(ts[0])
	again := terminationsOf(pod.DeepCopy())
	if terminationID(again[0]) != id {
		t.Error("the same termination got another ID")
	}
	u, err := ulid.Parse(id)
	if err != nil || ulid.Time(u.Time()).UTC() != t0.Truncate(time.Millisecond) {
		t.Errorf("id %s: %v, time %v", id, err, ulid.Time(u.Time()))
	}
	next := restarted(pod.Status.ContainerStatuses[0], "containerd://"+cid(2), 137, "OOMKilled", t0.Add(time.Minute))
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{next}
	if other := terminationsOf(pod); terminationID(other[0]) == id {
		t.Error("the next termination got the same ID")
	}
}
