// Package kube makes the node agent a Kubernetes citizen: it maps a crashed
// container to its pod and workload, records containers that ended badly
// even when they left no core (an OOM kill never does), and points the pod
// at the report with an annotation and an event.
//
// It watches only the pods of its own node, through one informer whose cache
// keeps answering while the API server is unreachable.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/containerlog"
)

// Recorder stores and publishes a crash that has no spool entry; the node
// agent is one.
type Recorder interface {
	ShipRecord(ctx context.Context, c *corepipe.Crash) error
}

// Config is what a Watcher needs.
type Config struct {
	Client kubernetes.Interface
	// Node is the name of this node: only its pods are watched.
	Node string
	// UIURL is the base URL of the web UI, for the links in annotations and
	// events; empty leaves the links out.
	UIURL string
	// Blobs, when set, lets a restarted agent see which terminations it
	// already recorded: their manifests are stored under IDs derived from
	// the termination itself.
	Blobs corepipe.BlobStore
	// LogRoots are where the kubelet keeps container logs on this node:
	// a bad end's log is read for the crash it holds. Empty Pods reads none.
	LogRoots containerlog.Roots
	// LookupWait bounds how long Enrich waits for the informer to learn of a
	// container it does not know yet; the agent's shipping waits that long
	// at most.
	LookupWait time.Duration
	// LinkWait is how long a termination by a signal that dumps core waits
	// for its core to be shipped, so that the record can link to it.
	LinkWait time.Duration
	// MaxAge is how old a termination may be, when first seen, to be
	// recorded: an agent new on a node does not replay its history.
	MaxAge time.Duration
	// Resync is the informer's resync period.
	Resync time.Duration
	// APITimeout bounds each annotation and event call.
	APITimeout time.Duration
	Logger     *slog.Logger
}

// Watcher watches the pods of one node. It implements the agent's Enricher
// and its shipping hook.
type Watcher struct {
	cfg     Config
	log     *slog.Logger
	factory informers.SharedInformerFactory
	pods    cache.SharedIndexInformer
	now     func() time.Time

	mu sync.Mutex
	// changed is closed and replaced on every informer event, waking the
	// lookups waiting for a container to appear.
	changed chan struct{}
	gone    map[string]goneContainer
	recent  []coreCrash
	seen    map[types.UID]map[string]bool
	pending map[string]*pendingTermination

	wake     chan struct{}
	annotate chan *corepipe.Crash
}

// Defaults of Config.
const (
	DefaultLookupWait = 2 * time.Second
	DefaultLinkWait   = 30 * time.Second
	DefaultMaxAge     = time.Hour
	DefaultResync     = 10 * time.Minute
	DefaultAPITimeout = 10 * time.Second
)

// annotateQueue bounds the crashes waiting to be announced on their pods:
// a crash storm must not grow the agent, and an annotation is the part
// that can be dropped.
const annotateQueue = 256

// New returns a Watcher of cfg.Node's pods. Nothing is watched until Run.
func New(cfg Config) (*Watcher, error) {
	if cfg.Client == nil {
		return nil, errors.New("kube: no client")
	}
	if cfg.Node == "" {
		return nil, errors.New("kube: no node name (set --node-name or NODE_NAME)")
	}
	if cfg.LookupWait == 0 {
		cfg.LookupWait = DefaultLookupWait
	}
	if cfg.LinkWait == 0 {
		cfg.LinkWait = DefaultLinkWait
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Resync == 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.APITimeout == 0 {
		cfg.APITimeout = DefaultAPITimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		cfg:      cfg,
		log:      log,
		now:      time.Now,
		changed:  make(chan struct{}),
		gone:     map[string]goneContainer{},
		seen:     map[types.UID]map[string]bool{},
		pending:  map[string]*pendingTermination{},
		wake:     make(chan struct{}, 1),
		annotate: make(chan *corepipe.Crash, annotateQueue),
	}
	// RBAC cannot limit a list or watch to one node: the field selector is
	// what keeps the agent's cache to its own pods.
	w.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.Resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "spec.nodeName=" + cfg.Node
		}))
	w.pods = w.factory.Core().V1().Pods().Informer()
	if err := w.pods.AddIndexers(cache.Indexers{byContainerID: indexContainerIDs, byPodUID: indexPodUID}); err != nil {
		return nil, fmt.Errorf("kube: pod indexers: %w", err)
	}
	if err := w.pods.SetTransform(slim); err != nil {
		return nil, fmt.Errorf("kube: pod transform: %w", err)
	}
	if _, err := w.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.onPod(obj, false) },
		UpdateFunc: func(_, obj any) { w.onPod(obj, false) },
		DeleteFunc: func(obj any) { w.onPod(obj, true) },
	}); err != nil {
		return nil, fmt.Errorf("kube: pod handler: %w", err)
	}
	return w, nil
}

// Run watches the node's pods, records bad terminations through rec and
// annotates pods until ctx is cancelled.
func (w *Watcher) Run(ctx context.Context, rec Recorder) error {
	w.factory.Start(ctx.Done())
	defer w.factory.Shutdown()
	var wg sync.WaitGroup
	wg.Go(func() { w.annotateLoop(ctx) })
	wg.Go(func() { w.watchSync(ctx) })
	w.recordLoop(ctx, rec)
	wg.Wait()
	return nil
}

// syncWarnEvery is how often the watcher says that it still could not list
// the node's pods.
const syncWarnEvery = 30 * time.Second

// watchSync logs when the node's pods are first listed and warns while they
// are not: client-go itself is silent at its default verbosity while the API
// server is unreachable or refuses the agent.
func (w *Watcher) watchSync(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if w.pods.HasSynced() {
			w.log.Info("watching the pods of this node", "node", w.cfg.Node, "pods", len(w.pods.GetStore().ListKeys()))
			return
		}
		if time.Since(last) >= syncWarnEvery {
			w.log.Warn("the pods of this node cannot be listed (API server unreachable, or access denied): crashes keep only what the collector found",
				"node", w.cfg.Node)
			last = time.Now()
		}
	}
}

// Synced reports whether the informer has listed the node's pods once.
func (w *Watcher) Synced() bool { return w.pods.HasSynced() }

// NewClient returns a client from kubeconfig, or from the pod's service
// account when kubeconfig is empty.
func NewClient(kubeconfig string) (kubernetes.Interface, error) {
	var (
		cfg *rest.Config
		err error
	)
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kube: client config: %w", err)
	}
	cfg.UserAgent = "corepipe-agent"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: client: %w", err)
	}
	return client, nil
}

// slim drops what the agent never reads from a cached pod: a node's worth of
// pods stays small.
func slim(obj any) (any, error) {
	if pod, ok := obj.(*corev1.Pod); ok {
		pod.ManagedFields = nil
		pod.Spec.Volumes = nil
	}
	return obj, nil
}

// broadcast wakes every lookup waiting for the cache to change. Callers hold
// w.mu.
func (w *Watcher) broadcast() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// kick wakes the record loop.
func (w *Watcher) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}
