package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/settings"
)

// AnnotationTerminationReason tells a pod that its node's kernel panicked:
// "KernelPanic: <the panic's headline> (corepipe crash <ID>, <report URL>)".
const AnnotationTerminationReason = "corepipe.dev/termination-reason"

// ReasonKernelPanic is the reason of the events on a panicked node and its
// pods, and the code that starts the termination-reason annotation.
const ReasonKernelPanic = "KernelPanic"

// maxReasonLen bounds the termination-reason annotation and event
// messages: a panic line is the kernel's, of any length.
const maxReasonLen = 512

// PanicConfig is what a PanicWatcher needs.
type PanicConfig struct {
	Client kubernetes.Interface
	// UIURL is the web UI's base URL, for the report links; empty leaves
	// them out.
	UIURL string
	// ConfirmWait is how long a panic waits for its node to be seen dead
	// before its pods are told; after it, they never are.
	ConfirmWait time.Duration
	// DeletedTTL and MaxDeleted bound the history of deleted pods: the pod
	// GC deletes a dead node's pods 40 s to 5 min after it stopped, maybe
	// before its panic is recorded.
	DeletedTTL time.Duration
	MaxDeleted int
	// SyncWait bounds how long a lookup waits for the first listing.
	SyncWait   time.Duration
	Resync     time.Duration
	APITimeout time.Duration
	Logger     *slog.Logger
}

// Defaults of PanicConfig.
const (
	DefaultConfirmWait = 10 * time.Minute
	DefaultDeletedTTL  = 15 * time.Minute
	DefaultMaxDeleted  = 10000
	DefaultSyncWait    = 5 * time.Second
)

// confirmSlack is how long before a panic its node may have turned
// NotReady, or been seen rebooting, and still confirm it: a node can stop
// heartbeating before it panics (a hung task, a lockup).
const confirmSlack = 5 * time.Minute

// maxPending bounds the panics waiting for confirmation: a flood of
// spoofed datagrams must not grow the receiver.
const maxPending = 1024

// PanicWatcher is the cluster as the netconsole receiver sees it: the Nodes
// (by name and InternalIP), the pods bound to each, and the pods deleted
// recently. It names the node and the pods of a kernel panic, and once the
// node is confirmed dead — its Ready condition no longer True, or its boot
// ID changed — annotates each pod that still exists and records a
// KernelPanic event on it and on the Node. Until then nothing is written:
// netconsole is unauthenticated UDP, and a spoofed datagram must not touch
// anyone's pods.
type PanicWatcher struct {
	cfg     PanicConfig
	log     *slog.Logger
	factory informers.SharedInformerFactory
	pods    cache.SharedIndexInformer
	nodes   cache.SharedIndexInformer
	now     func() time.Time

	gaveUp atomic.Bool

	mu      sync.Mutex
	deleted []deletedPod
	// rebooted is when each node was seen with a new boot ID.
	rebooted map[string]time.Time
	pending  map[string]*pendingPanic
	wake     chan struct{}
}

type deletedPod struct {
	pod *corev1.Pod
	at  time.Time
}

type pendingPanic struct {
	crash    *corepipe.Crash
	title    string
	deadline time.Time
}

const (
	byNodeName = "nodeName"
	byAddress  = "address"
)

// NewPanicWatcher returns a PanicWatcher; nothing is watched until Run.
func NewPanicWatcher(cfg PanicConfig) (*PanicWatcher, error) {
	if cfg.Client == nil {
		return nil, errors.New("kube: no client")
	}
	settings.Default(&cfg.ConfirmWait, DefaultConfirmWait)
	settings.Default(&cfg.DeletedTTL, DefaultDeletedTTL)
	settings.Default(&cfg.MaxDeleted, DefaultMaxDeleted)
	settings.Default(&cfg.SyncWait, DefaultSyncWait)
	settings.Default(&cfg.Resync, DefaultResync)
	settings.Default(&cfg.APITimeout, DefaultAPITimeout)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &PanicWatcher{
		cfg: cfg, log: log, now: time.Now,
		rebooted: map[string]time.Time{},
		pending:  map[string]*pendingPanic{},
		wake:     make(chan struct{}, 1),
	}
	w.factory = informers.NewSharedInformerFactory(cfg.Client, cfg.Resync)
	w.pods = w.factory.Core().V1().Pods().Informer()
	w.nodes = w.factory.Core().V1().Nodes().Informer()
	for _, err := range []error{
		w.pods.SetTransform(slimPod),
		w.nodes.SetTransform(slimNode),
		w.pods.AddIndexers(cache.Indexers{byNodeName: func(obj any) ([]string, error) {
			if pod, ok := obj.(*corev1.Pod); ok && pod.Spec.NodeName != "" {
				return []string{pod.Spec.NodeName}, nil
			}
			return nil, nil
		}}),
		w.nodes.AddIndexers(cache.Indexers{byAddress: indexInternalIPs}),
	} {
		if err != nil {
			return nil, fmt.Errorf("kube: informers: %w", err)
		}
	}
	if _, err := w.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: w.onPodDeleted}); err != nil {
		return nil, fmt.Errorf("kube: pod handler: %w", err)
	}
	if _, err := w.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: w.onNodeUpdated,
		DeleteFunc: func(obj any) { w.kick() },
	}); err != nil {
		return nil, fmt.Errorf("kube: node handler: %w", err)
	}
	return w, nil
}

// Run watches the cluster's nodes and pods and tells the pods of confirmed
// panics until ctx is cancelled.
func (w *PanicWatcher) Run(ctx context.Context) error {
	w.factory.Start(ctx.Done())
	defer w.factory.Shutdown()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-w.wake:
		}
		w.confirmPending(ctx)
	}
}

// Synced reports whether nodes and pods have been listed once.
func (w *PanicWatcher) Synced() bool { return w.pods.HasSynced() && w.nodes.HasSynced() }

// errUnsynced says why a panic is recorded without its node's pods.
var errUnsynced = errors.New("the cluster's nodes and pods could not be listed (API server unreachable, or access denied)")

// awaitSync waits for the first listing, at most SyncWait, and once that
// wait was in vain not again: a panic is recorded without its pods rather
// than late.
func (w *PanicWatcher) awaitSync(ctx context.Context) error {
	if w.Synced() {
		return nil
	}
	if w.gaveUp.Load() {
		return errUnsynced
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.SyncWait)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), w.pods.HasSynced, w.nodes.HasSynced) {
		w.gaveUp.Store(true)
		return errUnsynced
	}
	return nil
}

// NodeOf names the Node that sender ("10.0.0.7:6665", or an address
// alone) is: the Node of that name, else the one with that InternalIP; ""
// when none is known.
func (w *PanicWatcher) NodeOf(ctx context.Context, sender string) string {
	if err := w.awaitSync(ctx); err != nil {
		return ""
	}
	if _, ok, _ := w.nodes.GetStore().GetByKey(sender); ok {
		return sender
	}
	addr := sender
	if ap, err := netip.ParseAddrPort(sender); err == nil {
		addr = ap.Addr().Unmap().String()
	} else if h, _, err := net.SplitHostPort(sender); err == nil {
		addr = h
	}
	objs, err := w.nodes.GetIndexer().ByIndex(byAddress, addr)
	if err != nil || len(objs) != 1 {
		// Two Nodes claiming one address name neither.
		return ""
	}
	return objs[0].(*corev1.Node).Name
}

// PodsOn names the pods bound to node and not finished at time at, those
// deleted since included: the pods its panic took down.
func (w *PanicWatcher) PodsOn(ctx context.Context, node string, at time.Time) ([]corepipe.PodRef, error) {
	if err := w.awaitSync(ctx); err != nil {
		return nil, err
	}
	objs, err := w.pods.GetIndexer().ByIndex(byNodeName, node)
	if err != nil {
		return nil, fmt.Errorf("kube: pods of node %s: %w", node, err)
	}
	seen := map[types.UID]bool{}
	var out []corepipe.PodRef
	add := func(pod *corev1.Pod) {
		if seen[pod.UID] || !runningAt(pod, at) {
			return
		}
		seen[pod.UID] = true
		out = append(out, corepipe.PodRef{Namespace: pod.Namespace, Pod: pod.Name, UID: string(pod.UID)})
	}
	for _, obj := range objs {
		add(obj.(*corev1.Pod))
	}
	w.mu.Lock()
	for _, d := range w.deleted {
		// A pod deleted before the panic was not on the node when it died.
		if d.pod.Spec.NodeName == node && !d.at.Before(at) {
			add(d.pod)
		}
	}
	w.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Pod < out[j].Pod
	})
	return out, nil
}

// runningAt reports whether pod had been created and not finished at at.
// The API server keeps times to the second.
func runningAt(pod *corev1.Pod, at time.Time) bool {
	if pod.CreationTimestamp.After(at) {
		return false
	}
	if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		return true
	}
	var finished time.Time
	for _, cs := range pod.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil && t.FinishedAt.After(finished) {
			finished = t.FinishedAt.Time
		}
	}
	// A finished pod that says no time finished before anyone asked.
	return !finished.IsZero() && !finished.Add(time.Second).Before(at)
}

// Recorded is told of every kernel panic recorded, with its headline: once
// its node is confirmed dead, within ConfirmWait, its pods are told. A
// panic from no known Node is dropped at once.
func (w *PanicWatcher) Recorded(ctx context.Context, c *corepipe.Crash, title string) {
	log := w.log.With(corepipe.LogKeyCrash, c.ID, "node", c.Node)
	if err := w.awaitSync(ctx); err != nil {
		// The receiver said so already, as it recorded the panic without
		// its pods.
		log.Debug("kernel panic: its pods are not told", "err", err)
		return
	}
	if _, ok, _ := w.nodes.GetStore().GetByKey(c.Node); !ok {
		log.Warn("kernel panic from no Node of this cluster (no such name or InternalIP): its pods are not told")
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.pending[c.ID]; ok {
		return
	}
	if len(w.pending) >= maxPending {
		log.Warn("kernel panic: its pods are not told: too many panics waiting for their nodes to be confirmed dead")
		return
	}
	w.pending[c.ID] = &pendingPanic{crash: c, title: title, deadline: w.now().Add(w.cfg.ConfirmWait)}
	log.Info("kernel panic: its pods will be told once the node is seen dead", "pods", len(c.Pods))
	w.kick()
}

// confirmPending tells the pods of every panic whose node is now seen
// dead, and forgets those that waited too long.
func (w *PanicWatcher) confirmPending(ctx context.Context) {
	now := w.now()
	var ready []*pendingPanic
	var why []string
	w.mu.Lock()
	for id, p := range w.pending {
		if reason, ok := w.confirmed(p.crash.Node, p.crash.CapturedAt); ok {
			ready = append(ready, p)
			why = append(why, reason)
			delete(w.pending, id)
		} else if now.After(p.deadline) {
			delete(w.pending, id)
			w.log.Warn("kernel panic not confirmed: its node stayed Ready with the same boot ID; its pods are not told",
				corepipe.LogKeyCrash, id, "node", p.crash.Node, "waited", w.cfg.ConfirmWait)
		}
	}
	w.mu.Unlock()
	for i, p := range ready {
		w.announce(ctx, p, why[i])
	}
}

// confirmed reports whether node is seen dead since about at, and why.
// Callers hold w.mu.
func (w *PanicWatcher) confirmed(node string, at time.Time) (string, bool) {
	obj, ok, _ := w.nodes.GetStore().GetByKey(node)
	if !ok {
		return "", false
	}
	n := obj.(*corev1.Node)
	since := at.Add(-confirmSlack)
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue && !c.LastTransitionTime.Time.Before(since) {
			return fmt.Sprintf("node Ready is %s since %s", c.Status, c.LastTransitionTime.UTC().Format(time.RFC3339)), true
		}
	}
	if t, ok := w.rebooted[node]; ok && !t.Before(since) {
		return "node rebooted (its boot ID changed)", true
	}
	return "", false
}

// announce annotates each pod of p's panic that still exists and records
// a KernelPanic event on it and on the Node. Event names derive from the
// crash ID: receivers side by side, or a replay, make one of each.
func (w *PanicWatcher) announce(ctx context.Context, p *pendingPanic, why string) {
	c := p.crash
	log := w.log.With(corepipe.LogKeyCrash, c.ID, "node", c.Node)
	url := reportURL(w.cfg.UIURL, c.ID)
	reason := TerminationReason(p.title, c.ID, url)
	told := 0
	for _, ref := range c.Pods {
		plog := log.With("pod", ref.Namespace+"/"+ref.Pod)
		if _, ok, _ := w.pods.GetStore().GetByKey(ref.Namespace + "/" + ref.Pod); !ok {
			plog.Debug("kernel panic: pod already deleted")
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, w.cfg.APITimeout)
		patch, err := panicPatch(ref, c.ID, url, reason)
		if err == nil {
			_, err = w.cfg.Client.CoreV1().Pods(ref.Namespace).Patch(cctx, ref.Pod, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "corepipe"})
		}
		if err != nil {
			// Gone since, or replaced under its name (the UID is a
			// precondition of the patch).
			plog.Warn("kernel panic: annotate pod", "err", err)
			cancel()
			continue
		}
		ev := panicEvent(corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ref.Namespace, Name: ref.Pod, UID: types.UID(ref.UID)},
			ref.Namespace, c, reason, w.now())
		if _, err := w.cfg.Client.CoreV1().Events(ref.Namespace).Create(cctx, ev, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			plog.Warn("kernel panic: pod event", "err", err)
		}
		cancel()
		told++
	}
	msg := fmt.Sprintf("%s; %d pods were on the node", reason, len(c.Pods))
	var nodeUID types.UID
	if obj, ok, _ := w.nodes.GetStore().GetByKey(c.Node); ok {
		nodeUID = obj.(*corev1.Node).UID
	}
	ev := panicEvent(corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: c.Node, UID: nodeUID}, metav1.NamespaceDefault, c, bounded(msg), w.now())
	cctx, cancel := context.WithTimeout(ctx, w.cfg.APITimeout)
	defer cancel()
	if _, err := w.cfg.Client.CoreV1().Events(metav1.NamespaceDefault).Create(cctx, ev, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		log.Warn("kernel panic: node event", "err", err)
	}
	log.Info("kernel panic confirmed: pods told", "why", why, "pods", len(c.Pods), "told", told)
}

// TerminationReason is the one line a pod gets when its node's kernel
// panicked, within maxReasonLen bytes.
func TerminationReason(title, id, url string) string {
	tail := " (corepipe crash " + id
	if url != "" {
		tail += ", " + url
	}
	tail += ")"
	head := ReasonKernelPanic + ": " + strings.Join(strings.Fields(strings.TrimPrefix(title, "kernel panic: ")), " ")
	if room := maxReasonLen - len(tail); len(head) > room {
		head = cutUTF8(head, room-len("…")) + "…"
	}
	return head + tail
}

// kernelPanicOf is the crash ID of the kernel panic pod was told of, ""
// when none: the ID in its termination-reason annotation.
func kernelPanicOf(pod *corev1.Pod) string {
	reason := pod.Annotations[AnnotationTerminationReason]
	if !strings.HasPrefix(reason, ReasonKernelPanic+": ") {
		return ""
	}
	const mark = "(corepipe crash "
	i := strings.LastIndex(reason, mark)
	if i < 0 {
		return ""
	}
	id, _, _ := strings.Cut(reason[i+len(mark):], ",")
	id = strings.TrimSuffix(id, ")")
	if !corepipe.ValidID(id) {
		return ""
	}
	return id
}

func bounded(s string) string {
	if len(s) > maxReasonLen {
		return cutUTF8(s, maxReasonLen-len("…")) + "…"
	}
	return s
}

// cutUTF8 cuts s to at most n bytes, not inside a rune.
func cutUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

func reportURL(base, id string) string {
	if base == "" {
		return ""
	}
	return strings.TrimSuffix(base, "/") + "/crashes/" + id
}

// panicPatch is the merge patch that tells a pod its node panicked; its
// UID is a precondition, so a pod that took a dead one's name is left
// alone.
func panicPatch(ref corepipe.PodRef, id, url, reason string) ([]byte, error) {
	return jsonPatch(ref.UID, map[string]any{
		AnnotationTerminationReason: reason,
		AnnotationCrashID:           id,
		AnnotationCrashURL:          nilIfEmpty(url),
	})
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// panicEvent is the KernelPanic event on obj, named after the object and
// the crash.
func panicEvent(obj corev1.ObjectReference, namespace string, c *corepipe.Crash, msg string, now time.Time) *corev1.Event {
	name := obj.Name
	if len(name) > 253-1-len(c.ID) {
		name = name[:253-1-len(c.ID)]
	}
	ts := metav1.NewTime(now)
	return &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: name + "." + strings.ToLower(c.ID), Namespace: namespace},
		InvolvedObject:      obj,
		Reason:              ReasonKernelPanic,
		Message:             msg,
		Type:                corev1.EventTypeWarning,
		Source:              corev1.EventSource{Component: "corepipe-kpanic", Host: c.Node},
		ReportingController: "corepipe.dev/kpanic",
		ReportingInstance:   "corepipe-kpanic",
		FirstTimestamp:      ts,
		LastTimestamp:       ts,
		Count:               1,
	}
}

func (w *PanicWatcher) onPodDeleted(obj any) {
	pod := podOf(obj)
	if pod == nil || pod.Spec.NodeName == "" {
		return
	}
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := w.deleted[:0]
	for _, d := range w.deleted {
		if now.Sub(d.at) < w.cfg.DeletedTTL {
			keep = append(keep, d)
		}
	}
	if len(keep) >= w.cfg.MaxDeleted {
		keep = keep[1:]
	}
	w.deleted = append(keep, deletedPod{pod: pod, at: now})
}

func (w *PanicWatcher) onNodeUpdated(oldObj, newObj any) {
	old, _ := oldObj.(*corev1.Node)
	n, _ := newObj.(*corev1.Node)
	if old != nil && n != nil && old.Status.NodeInfo.BootID != "" && n.Status.NodeInfo.BootID != old.Status.NodeInfo.BootID {
		w.mu.Lock()
		w.rebooted[n.Name] = w.now()
		w.mu.Unlock()
	}
	w.kick()
}

func (w *PanicWatcher) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// slimPod keeps what attribution reads of a pod: a cluster's worth of pods
// stays small.
func slimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			CreationTimestamp: pod.CreationTimestamp, DeletionTimestamp: pod.DeletionTimestamp,
		},
		Spec:   corev1.PodSpec{NodeName: pod.Spec.NodeName},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			out.Status.ContainerStatuses = append(out.Status.ContainerStatuses,
				corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: t.FinishedAt}}})
		}
	}
	return out, nil
}

// slimNode keeps a node's name, addresses, Ready condition and boot ID.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	out := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion}}
	out.Status.Addresses = n.Status.Addresses
	out.Status.NodeInfo.BootID = n.Status.NodeInfo.BootID
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Status.Conditions = append(out.Status.Conditions, c)
		}
	}
	return out, nil
}

func indexInternalIPs(obj any) ([]string, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				out = append(out, ip.String())
			}
		}
	}
	return out, nil
}
