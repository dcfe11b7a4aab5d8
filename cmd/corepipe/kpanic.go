package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/size"
	"github.com/corepipe/corepipe/netconsole"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

type kpanicFlags struct {
	listen string
	blob   string
	nats   string
	recv   *netconsoleFlags
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
	fset.StringVar(&f.nats, "nats", "", "NATS `URL`")
	f.recv = netconsoleFlagsOf(fset)
	return cmd
}

func runKpanic(ctx context.Context, log *slog.Logger, f *kpanicFlags) error {
	cfg := f.recv.config(log.With("part", "kpanic"))
	pc, err := netconsole.Listen(f.listen)
	if err != nil {
		return err
	}
	blobs, q, err := connect(ctx, f.blob, f.nats, natsq.Name("corepipe-kpanic"), natsq.Logger(log.With("part", "nats")))
	if err != nil {
		pc.Close()
		return err
	}
	defer q.Close(context.Background())
	log.Info("netconsole receiver listening", "addr", pc.LocalAddr().String())
	return netconsole.Run(ctx, pc, cfg, &netconsole.Recorder{Blobs: blobs, Queue: q, Logger: log.With("part", "kpanic")})
}

// kpanicPart is the receiver as a part of dev, naming the pods from idx.
func kpanicPart(log *slog.Logger, addr string, f *netconsoleFlags, blobs corepipe.BlobStore, q netconsole.Publisher, idx corepipe.Index) (func(context.Context) error, error) {
	if addr == "" {
		return func(context.Context) error { return nil }, nil
	}
	pc, err := netconsole.Listen(addr)
	if err != nil {
		return nil, err
	}
	log = log.With("part", "kpanic")
	log.Info("netconsole receiver listening", "addr", pc.LocalAddr().String())
	rec := &netconsole.Recorder{Blobs: blobs, Queue: q, Pods: netconsole.IndexPods{Index: idx, Window: 15 * time.Minute}, Logger: log}
	return func(ctx context.Context) error { return netconsole.Run(ctx, pc, f.config(log), rec) }, nil
}
