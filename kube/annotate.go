package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/corepipe/corepipe"
)

// Pod annotations that point at the last crash of one of the pod's
// containers.
const (
	AnnotationCrashID  = "corepipe.dev/last-crash-id"
	AnnotationCrashURL = "corepipe.dev/last-crash-url"
)

// Event reasons: a crash with a core, and a container that ended badly
// without one.
const (
	ReasonCoreDumped = "CoreDumped"
	ReasonCrashed    = "Crashed"
)

// Recent core crashes are kept this long and this many, to link the
// termination records of their containers to them.
const (
	recentTTL = 10 * time.Minute
	recentMax = 512
)

type coreCrash struct {
	id, containerID, podUID, container string
	at                                 time.Time
}

// Shipped is told of every crash the agent published. A crash with a core
// is remembered so that the termination of its container links to it, and
// the pod of every crash is annotated — unless it is a termination whose
// core already was.
func (w *Watcher) Shipped(_ context.Context, c *corepipe.Crash) {
	if c.Container == nil || c.Container.Pod == "" {
		return
	}
	if c.Termination == nil {
		w.mu.Lock()
		w.rememberCore(c)
		w.mu.Unlock()
		w.kick()
	} else if c.Termination.CoreID != "" {
		return
	}
	select {
	case w.annotate <- c:
	default:
		w.log.Warn("pod annotation dropped: too many crashes waiting", corepipe.LogKeyCrash, c.ID, "pod", c.Container.Namespace+"/"+c.Container.Pod)
	}
}

// rememberCore keeps c for linking. Callers hold w.mu.
func (w *Watcher) rememberCore(c *corepipe.Crash) {
	now := w.now()
	keep := w.recent[:0]
	for _, r := range w.recent {
		if now.Sub(r.at) < recentTTL {
			keep = append(keep, r)
		}
	}
	if len(keep) >= recentMax {
		keep = keep[1:]
	}
	w.recent = append(keep, coreCrash{
		id: c.ID, containerID: c.Container.ID, podUID: c.Container.PodUID,
		container: c.Container.Container, at: c.CapturedAt,
	})
}

// coreOf returns the ID of the core crash of termination t's run, "" when
// none was shipped. The container ID names the run; when either side lacks
// it, the pod, container name and time must agree. Callers hold w.mu.
func (w *Watcher) coreOf(t termination) string {
	_, id := ParseContainerID(t.state.ContainerID)
	for i := len(w.recent) - 1; i >= 0; i-- {
		r := w.recent[i]
		if id != "" && r.containerID != "" {
			if r.containerID == id {
				return r.id
			}
			continue
		}
		if r.podUID == string(t.pod.UID) && r.container == t.status.Name && r.container != "" &&
			!r.at.Before(t.state.StartedAt.Add(-5*time.Second)) && !r.at.After(t.at.Add(5*time.Second)) {
			return r.id
		}
	}
	return ""
}

func (w *Watcher) annotateLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-w.annotate:
			w.announce(ctx, c)
		}
	}
}

// announce annotates c's pod and emits an event on it, so that kubectl
// describe pod points at the report.
func (w *Watcher) announce(ctx context.Context, c *corepipe.Crash) {
	log := w.log.With(corepipe.LogKeyCrash, c.ID, "pod", c.Container.Namespace+"/"+c.Container.Pod)
	ctx, cancel := context.WithTimeout(ctx, w.cfg.APITimeout)
	defer cancel()
	url := w.reportURL(c.ID)
	patch, err := annotationPatch(c, url)
	if err != nil {
		log.Error("annotate pod", "err", err)
		return
	}
	pods := w.cfg.Client.CoreV1().Pods(c.Container.Namespace)
	if _, err := pods.Patch(ctx, c.Container.Pod, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "corepipe"}); err != nil {
		// A pod already gone, or replaced by one of the same name (its UID
		// is a precondition of the patch), keeps its event history only.
		log.Warn("annotate pod", "err", err)
	}
	ev := crashEvent(c, url, w.cfg.Node, w.now())
	if _, err := w.cfg.Client.CoreV1().Events(c.Container.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		log.Warn("pod event", "err", err)
		return
	}
	log.Debug("pod annotated", "url", url)
}

func (w *Watcher) reportURL(id string) string { return reportURL(w.cfg.UIURL, id) }

// annotationPatch is the JSON merge patch that sets the crash annotations.
// The pod's UID in it is a precondition: the API server refuses to patch a
// new pod that took the crashed one's name.
func annotationPatch(c *corepipe.Crash, url string) ([]byte, error) {
	return jsonPatch(c.Container.PodUID, map[string]any{AnnotationCrashID: c.ID, AnnotationCrashURL: nilIfEmpty(url)})
}

// jsonPatch is the JSON merge patch that sets (or, for nil values,
// removes) annotations, with the pod's UID as a precondition when known.
func jsonPatch(uid string, ann map[string]any) ([]byte, error) {
	meta := map[string]any{"annotations": ann}
	if uid != "" {
		meta["uid"] = uid
	}
	b, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return nil, fmt.Errorf("encode annotation patch: %w", err)
	}
	return b, nil
}

// crashEvent is the Warning event on c's pod. Its name derives from the
// crash ID, so that announcing a crash twice makes one event.
func crashEvent(c *corepipe.Crash, url, node string, now time.Time) *corev1.Event {
	reason, what := ReasonCoreDumped, "dumped core"
	if c.Termination != nil {
		reason, what = ReasonCrashed, "crashed"
	}
	msg := fmt.Sprintf("container %s %s", orUnknown(c.Container.Container), what)
	if t := c.Termination; t != nil {
		msg += fmt.Sprintf(" (exit code %d", t.ExitCode)
		if t.Reason != "" {
			msg += ", " + t.Reason
		}
		msg += ")"
	} else if c.Signal.Name != "" {
		msg += " (" + c.Signal.Name + ")"
	}
	msg += ": corepipe crash " + c.ID
	if url != "" {
		msg += ", report " + url
	}
	// An object name is at most 253 characters; the crash ID keeps it unique.
	name := c.Container.Pod
	if len(name) > 253-1-len(c.ID) {
		name = name[:253-1-len(c.ID)]
	}
	ts := metav1.NewTime(now)
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name + "." + strings.ToLower(c.ID),
			Namespace: c.Container.Namespace,
		},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "v1",
			Kind:       "Pod",
			Namespace:  c.Container.Namespace,
			Name:       c.Container.Pod,
			UID:        types.UID(c.Container.PodUID),
		},
		Reason:              reason,
		Message:             msg,
		Type:                corev1.EventTypeWarning,
		Source:              corev1.EventSource{Component: "corepipe-agent", Host: node},
		ReportingController: "corepipe.dev/agent",
		ReportingInstance:   node,
		FirstTimestamp:      ts,
		LastTimestamp:       ts,
		Count:               1,
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
