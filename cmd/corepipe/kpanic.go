package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/size"
	"github.com/corepipe/corepipe/kube"
	"github.com/corepipe/corepipe/netconsole"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

type kpanicFlags struct {
	listen string
	blob   string
	nats   *natsFlags
	recv   *netconsoleFlags
	kube   kubeFlags
}

// netconsoleFlags are the receiver's bounds, the same on kpanic and dev.
type netconsoleFlags struct {
	quiet       time.Duration
	maxSources  int
	sourceBytes int64
	totalBytes  int64
	rate        float64
}

func netconsoleFlagsOf(fset *pflag.FlagSet) *netconsoleFlags {
	f := &netconsoleFlags{sourceBytes: 256 << 10, totalBytes: 64 << 20}
	fset.DurationVar(&f.quiet, "netconsole-quiet", 5*time.Second, "how long a sender that printed a kernel panic must be silent before its log is recorded")
	fset.IntVar(&f.maxSources, "netconsole-max-senders", 4096, "senders tracked at once; the least recently heard makes room")
	fset.Var((*size.Value)(&f.sourceBytes), "netconsole-sender-memory", "recent console lines kept per sender")
	fset.Var((*size.Value)(&f.totalBytes), "netconsole-memory", "recent console lines kept for all senders together")
	fset.Float64Var(&f.rate, "netconsole-rate", 2000, "datagrams per second accepted from one sender")
	return f
}

func (f *netconsoleFlags) config(log *slog.Logger) netconsole.Config {
	return netconsole.Config{
		Quiet: f.quiet, MaxSources: f.maxSources, MaxSourceBytes: int(f.sourceBytes), MaxTotalBytes: int(f.totalBytes),
		Rate: f.rate, Logger: log,
	}
}

func kpanicCmd(log *slog.Logger) *cobra.Command {
	f := &kpanicFlags{}
	cmd := &cobra.Command{
		Use:   "kpanic",
		Short: "receive nodes' kernel logs over netconsole and record their panics",
		Long: `Receive the kernel logs nodes send with netconsole (plain or extended, over
UDP), keep each sender's recent lines within bounds, and when a kernel
panics record its console log in the blob store and the crash on the queue,
for the analyzer to report as a kernel_panic. The crash ID comes from the
panic itself, so receivers side by side record it once. UDP is
unauthenticated: a report from it is evidence, not a confirmed death.`,
		Example: `  corepipe kpanic --listen udp://0.0.0.0:6666 --blob s3://crashes?endpoint=minio:9000 --nats nats://nats:4222
  # on a node: modprobe netconsole netconsole=+6665@10.0.0.5/eth0,6666@10.0.0.9/`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKpanic(cmd.Context(), log, f)
		},
	}
	fset := cmd.Flags()
	fset.StringVar(&f.listen, "listen", "udp://0.0.0.0:6666", "`udp://ADDR:PORT` to receive netconsole datagrams on")
	fset.StringVar(&f.blob, "blob", "", blobUsage)
	f.nats = natsFlagsOf(fset)
	f.recv = netconsoleFlagsOf(fset)
	fset.BoolVar(&f.kube.enabled, "kube", false, "on Kubernetes: name each panic's node and pods, and once the node is seen dead annotate its pods and record KernelPanic events")
	fset.StringVar(&f.kube.kubeconfig, "kubeconfig", "", "with --kube: kubeconfig file (default: the pod's service account)")
	f.kube.uiURL = fset.String("ui-url", "", "with --kube: base URL of the web UI, for the report links on pods")
	return cmd
}

// panicWatcher is the cluster's nodes and pods for the receiver, nil
// without --kube.
func (f *kubeFlags) panicWatcher(log *slog.Logger) (*kube.PanicWatcher, error) {
	if f == nil || !f.enabled {
		return nil, nil
	}
	klog.SetSlogLogger(log.With("part", "client-go"))
	client, err := kube.NewClient(f.kubeconfig)
	if err != nil {
		return nil, err
	}
	return kube.NewPanicWatcher(kube.PanicConfig{Client: client, UIURL: *f.uiURL, Logger: log.With("part", "kube")})
}

// withCluster has rec name the node and pods of a panic from w, and tell
// the pods through it; run runs w beside the receiver.
func withCluster(rec *netconsole.Recorder, w *kube.PanicWatcher, run func(context.Context) error) func(context.Context) error {
	if w == nil {
		return run
	}
	rec.Nodes, rec.Pods, rec.Observer = w, w, w
	return func(ctx context.Context) error { return runAll(ctx, w.Run, run) }
}

func runKpanic(ctx context.Context, log *slog.Logger, f *kpanicFlags) error {
	cfg := f.recv.config(log.With("part", "kpanic"))
	pc, err := netconsole.Listen(f.listen)
	if err != nil {
		return err
	}
	cluster, err := f.kube.panicWatcher(log)
	if err != nil {
		pc.Close()
		return err
	}
	blobs, q, err := connect(ctx, f.blob, f.nats.url, append(f.nats.options(), natsq.Name("corepipe-kpanic"), natsq.Logger(log.With("part", "nats")))...)
	if err != nil {
		pc.Close()
		return err
	}
	defer q.Close(context.Background())
	log.Info("netconsole receiver listening", "addr", pc.LocalAddr().String())
	rec := &netconsole.Recorder{Blobs: blobs, Queue: q, Logger: log.With("part", "kpanic")}
	return withCluster(rec, cluster, func(ctx context.Context) error { return netconsole.Run(ctx, pc, cfg, rec) })(ctx)
}

// kpanicPart is the receiver as a part of dev: with --kube it names the
// pods from the cluster and tells them, else from the crashes in idx.
func kpanicPart(log *slog.Logger, addr string, f *netconsoleFlags, kf *kubeFlags, blobs corepipe.BlobStore, q netconsole.Publisher, idx corepipe.Index) (func(context.Context) error, error) {
	if addr == "" {
		return func(context.Context) error { return nil }, nil
	}
	log = log.With("part", "kpanic")
	cluster, err := kf.panicWatcher(log)
	if err != nil {
		return nil, err
	}
	pc, err := netconsole.Listen(addr)
	if err != nil {
		return nil, err
	}
	log.Info("netconsole receiver listening", "addr", pc.LocalAddr().String())
	rec := &netconsole.Recorder{Blobs: blobs, Queue: q, Pods: netconsole.IndexPods{Index: idx, Window: 15 * time.Minute}, Logger: log}
	return withCluster(rec, cluster, func(ctx context.Context) error { return netconsole.Run(ctx, pc, f.config(log), rec) }), nil
}
