package kube

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/corepipe/corepipe"
)

// Index names of the pod cache.
const (
	byContainerID = "containerID"
	byPodUID      = "podUID"
)

// goneTTL is how long the metadata of a deleted pod's containers is kept: a
// Job's pod can be gone before its core, still uploading, is shipped.
const goneTTL = 30 * time.Minute

type goneContainer struct {
	c  *corepipe.Container
	at time.Time
}

// statuses returns every container status of pod: init, regular and
// ephemeral containers all crash alike.
func statuses(pod *corev1.Pod) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(pod.Status.InitContainerStatuses)+len(pod.Status.ContainerStatuses)+len(pod.Status.EphemeralContainerStatuses))
	out = append(out, pod.Status.InitContainerStatuses...)
	out = append(out, pod.Status.ContainerStatuses...)
	return append(out, pod.Status.EphemeralContainerStatuses...)
}

// rawIDs returns the container IDs ("containerd://…") a status names: the
// current run and the previous one, which after a restart is the one that
// crashed.
func rawIDs(cs *corev1.ContainerStatus) []string {
	var ids []string
	for _, raw := range []string{cs.ContainerID, terminatedID(cs.State.Terminated), terminatedID(cs.LastTerminationState.Terminated)} {
		if raw != "" && !slices.Contains(ids, raw) {
			ids = append(ids, raw)
		}
	}
	return ids
}

func indexContainerIDs(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	var ids []string
	for _, cs := range statuses(pod) {
		for _, raw := range rawIDs(&cs) {
			_, id := ParseContainerID(raw)
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func indexPodUID(obj any) ([]string, error) {
	if pod, ok := obj.(*corev1.Pod); ok {
		return []string{string(pod.UID)}, nil
	}
	return nil, nil
}

// podMeta is what the pod says of all its containers.
func podMeta(pod *corev1.Pod) *corepipe.Container {
	return &corepipe.Container{
		Namespace: pod.Namespace,
		Pod:       pod.Name,
		PodUID:    string(pod.UID),
		Labels:    maps.Clone(pod.Labels),
		Owner:     ownerOf(pod),
	}
}

// containerMeta is the metadata of the container run rawID ("containerd://…")
// of status cs.
func containerMeta(pod *corev1.Pod, cs *corev1.ContainerStatus, rawID string) *corepipe.Container {
	c := podMeta(pod)
	c.Runtime, c.ID = ParseContainerID(rawID)
	c.Container = cs.Name
	c.Image = cs.Image
	c.ImageID = cs.ImageID
	return c
}

// lookup finds container id in the cache, then among the containers of
// recently deleted pods.
func (w *Watcher) lookup(id string) *corepipe.Container {
	if id == "" {
		return nil
	}
	objs, err := w.pods.GetIndexer().ByIndex(byContainerID, id)
	if err == nil {
		for _, obj := range objs {
			pod := obj.(*corev1.Pod)
			for _, cs := range statuses(pod) {
				for _, raw := range rawIDs(&cs) {
					if _, bare := ParseContainerID(raw); bare == id {
						return containerMeta(pod, &cs, raw)
					}
				}
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if g, ok := w.gone[id]; ok {
		c := *g.c
		c.Labels = maps.Clone(g.c.Labels)
		return &c
	}
	return nil
}

func terminatedID(t *corev1.ContainerStateTerminated) string {
	if t == nil {
		return ""
	}
	return t.ContainerID
}

// podByUID finds a cached pod by UID.
func (w *Watcher) podByUID(uid string) *corev1.Pod {
	if uid == "" {
		return nil
	}
	objs, err := w.pods.GetIndexer().ByIndex(byPodUID, uid)
	if err != nil || len(objs) == 0 {
		return nil
	}
	return objs[0].(*corev1.Pod)
}

// Enrich adds the pod, container, image, labels and owner to a crash whose
// container ID (or pod UID) the collector found in its cgroup. A container
// the cache does not know yet may be seconds from appearing in the pod's
// status, so Enrich waits for it, at most LookupWait; then it settles for
// what it has — the pod alone, or nothing — and says so in the notes. The
// API server being down only means the cache stops changing.
func (w *Watcher) Enrich(ctx context.Context, c *corepipe.Crash) {
	if c.Container == nil || (c.Container.ID == "" && c.Container.PodUID == "") {
		return
	}
	if c.Container.ID != "" && w.await(ctx, c.Container) {
		return
	}
	log := w.log.With(corepipe.LogKeyCrash, c.ID)
	if pod := w.podByUID(c.Container.PodUID); pod != nil {
		merge(c.Container, podMeta(pod))
		c.Notes = append(c.Notes, fmt.Sprintf("container %q is not (yet) in the status of pod %s/%s: container name and image unknown", c.Container.ID, pod.Namespace, pod.Name))
		log.Warn("container not in its pod's status", "container_id", c.Container.ID, "pod", pod.Namespace+"/"+pod.Name)
		return
	}
	why := "not among this node's pods"
	if !w.pods.HasSynced() {
		why = "the pods of this node could not be listed (API server unreachable?)"
	}
	c.Notes = append(c.Notes, fmt.Sprintf("no Kubernetes metadata for container %q: %s", c.Container.ID, why))
	log.Warn("no pod for crashed container", "container_id", c.Container.ID, "pod_uid", c.Container.PodUID, "reason", why)
}

// await looks c up until the cache knows it, at most LookupWait, and fills
// it in; it reports whether it found it.
func (w *Watcher) await(ctx context.Context, c *corepipe.Container) bool {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.LookupWait)
	defer cancel()
	for {
		w.mu.Lock()
		changed := w.changed
		w.mu.Unlock()
		if meta := w.lookup(c.ID); meta != nil {
			merge(c, meta)
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// merge fills dst with meta, keeping what the collector found itself.
func merge(dst, meta *corepipe.Container) {
	if dst.ID == "" {
		dst.ID = meta.ID
	}
	if dst.Runtime == "" {
		dst.Runtime = meta.Runtime
	}
	if dst.PodUID == "" {
		dst.PodUID = meta.PodUID
	}
	dst.Namespace = meta.Namespace
	dst.Pod = meta.Pod
	dst.Labels = meta.Labels
	dst.Owner = meta.Owner
	if meta.Container != "" {
		dst.Container = meta.Container
		dst.Image = meta.Image
		dst.ImageID = meta.ImageID
	}
}

// remember keeps the containers of a deleted pod for goneTTL. Callers hold
// w.mu.
func (w *Watcher) remember(pod *corev1.Pod, now time.Time) {
	for id, g := range w.gone {
		if now.Sub(g.at) > goneTTL {
			delete(w.gone, id)
		}
	}
	for _, cs := range statuses(pod) {
		for _, raw := range rawIDs(&cs) {
			c := containerMeta(pod, &cs, raw)
			w.gone[c.ID] = goneContainer{c: c, at: now}
		}
	}
}

// podOf unwraps an informer object, including the tombstone of a deletion
// the informer missed while disconnected.
func podOf(obj any) *corev1.Pod {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, _ := obj.(*corev1.Pod)
	return pod
}
