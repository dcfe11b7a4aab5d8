package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/containerlog"
	"github.com/corepipe/corepipe/kube"
)

// kubeFlags are the agent's Kubernetes flags.
type kubeFlags struct {
	enabled    bool
	kubeconfig string
	node       string
	uiURL      *string
	logs       containerlog.Roots
}

// kubeFlagsOf declares the Kubernetes flags; uiURL is the web UI's base
// URL when another part's flag already holds it (corepipe dev's notifier),
// nil to declare --ui-url here.
func kubeFlagsOf(fset *pflag.FlagSet, uiURL *string) *kubeFlags {
	f := &kubeFlags{uiURL: uiURL}
	fset.BoolVar(&f.enabled, "kube", false, "on Kubernetes: add each crash's pod, record containers that end badly without a core, annotate their pods")
	fset.StringVar(&f.kubeconfig, "kubeconfig", "", "with --kube: kubeconfig file (default: the pod's service account)")
	fset.StringVar(&f.node, "node-name", os.Getenv("NODE_NAME"), "with --kube: this node's name (default $NODE_NAME)")
	if f.uiURL == nil {
		f.uiURL = fset.String("ui-url", "", "with --kube: base URL of the web UI, for the report links on pods")
	}
	fset.StringVar(&f.logs.Pods, "pod-logs", containerlog.DefaultRoots.Pods, "with --kube: the kubelet's pod log `directory`, read for the traceback of a container that crashed without a core (empty: none)")
	fset.StringVar(&f.logs.Containers, "container-logs", containerlog.DefaultRoots.Containers, "with --kube: the kubelet's `directory` of links to container logs by container ID")
	return f
}

// watcher returns the node's pod watcher, nil without --kube.
func (f *kubeFlags) watcher(log *slog.Logger, blobs corepipe.BlobStore) (*kube.Watcher, error) {
	if !f.enabled {
		return nil, nil
	}
	// client-go logs through klog: one log stream, one format.
	klog.SetSlogLogger(log.With("part", "client-go"))
	client, err := kube.NewClient(f.kubeconfig)
	if err != nil {
		return nil, err
	}
	return kube.New(kube.Config{
		Client:   client,
		Node:     f.node,
		UIURL:    *f.uiURL,
		Blobs:    blobs,
		LogRoots: f.logs,
		Logger:   log.With("part", "kube"),
	})
}

// withWatcher hooks w into the agent: crashes get their pod before they are
// stored, and pods get annotated once their crash is published.
func withWatcher(w *kube.Watcher) func(*agent.Config) {
	return func(cfg *agent.Config) {
		if w != nil {
			cfg.Enricher = w
			cfg.Observer = w
		}
	}
}

// runWatcher runs w, recording terminations through ag, until ctx is done.
func runWatcher(w *kube.Watcher, ag *agent.Agent) func(context.Context) error {
	return func(ctx context.Context) error {
		if w == nil {
			<-ctx.Done()
			return nil
		}
		return w.Run(ctx, ag)
	}
}
