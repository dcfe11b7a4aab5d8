package kube

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ktesting "k8s.io/client-go/testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
)

// patches returns the bodies of the pod patches the watcher sent.
func patches(t *testing.T, actions []ktesting.Action) []string {
	t.Helper()
	var out []string
	for _, a := range actions {
		if p, ok := a.(ktesting.PatchActionImpl); ok && a.GetResource().Resource == "pods" {
			if p.GetPatchType() != types.MergePatchType {
				t.Errorf("patch type %s", p.GetPatchType())
			}
			out = append(out, string(p.GetPatch()))
		}
	}
	return out
}

func events(t *testing.T, w *Watcher, ns string) []corev1.Event {
	t.Helper()
	list, err := w.cfg.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func TestAnnotatesPodOfCoreCrash(t *testing.T) {
	pod := newPod("web", 1, running("containerd://"+cid(1)))
	client := fakeClient(pod)
	w := start(t, Config{Client: client, UIURL: "https://corepipe.example/"}, nil, true)

	c := crashIn(cid(1), "")
	c.Signal = corepipe.Signal{Number: 6, Name: "SIGABRT"}
	w.Enrich(context.Background(), c)
	w.Shipped(context.Background(), c)
	testkit.WaitFor(t, "the event", func() bool { return len(events(t, w, "shop")) == 1 })

	url := "https://corepipe.example/crashes/" + c.ID
	want := `{"metadata":{"annotations":{"corepipe.dev/last-crash-id":"` + c.ID + `","corepipe.dev/last-crash-url":"` + url + `"},"uid":"` + string(pod.UID) + `"}}`
	if got := patches(t, client.Actions()); len(got) != 1 || got[0] != want {
		t.Errorf("patches %q\nwant %q", got, want)
	}
	annotated, err := client.CoreV1().Pods("shop").Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if annotated.Annotations[AnnotationCrashID] != c.ID || annotated.Annotations[AnnotationCrashURL] != url {
		t.Errorf("pod annotations %v", annotated.Annotations)
	}

	ev := events(t, w, "shop")[0]
	if ev.Reason != ReasonCoreDumped || ev.Type != corev1.EventTypeWarning || ev.Count != 1 || ev.Source.Host != testNode {
		t.Errorf("event %s %s count %d source %+v", ev.Type, ev.Reason, ev.Count, ev.Source)
	}
	if ev.InvolvedObject != (corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: pod.Name, UID: pod.UID}) {
		t.Errorf("involved object %+v", ev.InvolvedObject)
	}
	if wantMsg := "container app dumped core (SIGABRT): corepipe crash " + c.ID + ", report " + url; ev.Message != wantMsg {
		t.Errorf("message %q\nwant %q", ev.Message, wantMsg)
	}

	// Announcing the same crash again (a re-shipped spool entry) makes no
	// second event.
	w.Shipped(context.Background(), c)
	testkit.WaitFor(t, "the second patch", func() bool { return len(patches(t, client.Actions())) == 2 })
	if n := len(events(t, w, "shop")); n != 1 {
		t.Errorf("%d events after announcing twice", n)
	}
}

func TestAnnotatesPodOfTermination(t *testing.T) {
	pod := newPod("web", 1, restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 137, "OOMKilled", t0))
	client := fakeClient(pod)
	rec := newRecorder()
	// No UI URL: the annotation of an earlier link is removed, not left stale.
	w := startAt(t, Config{Client: client}, rec)
	c := rec.next(t)
	testkit.WaitFor(t, "the event", func() bool { return len(events(t, w, "shop")) == 1 })
	var patch struct {
		Metadata struct {
			Annotations map[string]any `json:"annotations"`
			UID         string         `json:"uid"`
		} `json:"metadata"`
	}
	got := patches(t, client.Actions())
	if len(got) != 1 {
		t.Fatalf("patches %q", got)
	}
	if err := json.Unmarshal([]byte(got[0]), &patch); err != nil {
		t.Fatal(err)
	}
	ann := patch.Metadata.Annotations
	if v, ok := ann[AnnotationCrashURL]; len(ann) != 2 || ann[AnnotationCrashID] != c.ID || !ok || v != nil || patch.Metadata.UID != string(pod.UID) {
		t.Errorf("patch %s", got[0])
	}
	ev := events(t, w, "shop")[0]
	if ev.Reason != ReasonCrashed || ev.Message != "container app crashed (exit code 137, OOMKilled): corepipe crash "+c.ID {
		t.Errorf("event %s %q", ev.Reason, ev.Message)
	}
}

func TestLinkedTerminationLeavesCoreAnnotation(t *testing.T) {
	pod := newPod("web", 1, running("containerd://"+cid(1)))
	client := fakeClient(pod)
	w := start(t, Config{Client: client}, nil, true)
	w.Shipped(context.Background(), &corepipe.Crash{ID: corepipe.NewID(t0),
		Container:   &corepipe.Container{Namespace: "shop", Pod: pod.Name, PodUID: string(pod.UID)},
		Termination: &corepipe.Termination{ExitCode: 139, CoreID: corepipe.NewID(t0)}})
	// A core crash shipped after it proves the queue was worked through.
	core := crashIn(cid(1), "")
	w.Enrich(context.Background(), core)
	w.Shipped(context.Background(), core)
	testkit.WaitFor(t, "the core's event", func() bool { return len(events(t, w, "shop")) == 1 })
	if got := patches(t, client.Actions()); len(got) != 1 || !strings.Contains(got[0], core.ID) {
		t.Errorf("patches %q", got)
	}
}

func TestEventNameFitsLongPodNames(t *testing.T) {
	c := &corepipe.Crash{ID: corepipe.NewID(time.Now()), Container: &corepipe.Container{Namespace: "ns", Pod: strings.Repeat("p", 253)}}
	ev := crashEvent(c, "", testNode, time.Now())
	if len(ev.Name) != 253 || !strings.HasSuffix(ev.Name, "."+strings.ToLower(c.ID)) {
		t.Errorf("event name %q (%d)", ev.Name, len(ev.Name))
	}
}
