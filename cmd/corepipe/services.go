package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/api"
	"github.com/corepipe/corepipe/blob"
	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/collector/spool"
	natsq "github.com/corepipe/corepipe/queue/nats"
	"github.com/corepipe/corepipe/sqlite"
)

// connect opens the blob store and the queue named by the common flags.
func connect(ctx context.Context, blobURL, natsURL string, opts ...natsq.Option) (corepipe.BlobStore, *natsq.Queue, error) {
	if blobURL == "" || natsURL == "" {
		return nil, nil, fmt.Errorf("--blob and --nats are required")
	}
	blobs, err := blob.Open(ctx, blobURL)
	if err != nil {
		return nil, nil, err
	}
	q, err := natsq.Open(ctx, natsURL, append(opts, natsq.RetryOnFailedConnect(true))...)
	if err != nil {
		return nil, nil, err
	}
	return blobs, q, nil
}

// natsFlags are the queue's flags, the same on every part that opens it.
type natsFlags struct {
	url      string
	replicas int
}

func natsFlagsOf(fset *pflag.FlagSet) *natsFlags {
	f := &natsFlags{}
	fset.StringVar(&f.url, "nats", "", "NATS `URL`; a cluster's servers comma-separated (nats://a:4222,nats://b:4222)")
	fset.IntVar(&f.replicas, "nats-replicas", 1, "replicas of the streams and buckets this part creates: 3 on a JetStream cluster of three or more")
	return f
}

func (f *natsFlags) options() []natsq.Option { return []natsq.Option{natsq.Replicas(f.replicas)} }

// blobUsage is the --blob flag's help, the same on every part.
const blobUsage = "blob store `URL`: file:///path or s3://bucket/prefix?endpoint=host:port (credentials from AWS_* or MINIO_ROOT_* variables)"

// agentCmdFlags are `corepipe agent`'s flags.
type agentCmdFlags struct {
	spool        string
	blob         string
	nats         *natsFlags
	install      bool
	force        bool
	collectorBin string
	stateFile    string
	limits       *spool.Settings
	kube         *kubeFlags
	agent        *agentFlags
	policy       *corePolicyFlags
	crashOutput  string
}

func agentCmd(log *slog.Logger) *cobra.Command {
	f := &agentCmdFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "ship the node's spool to the blob store and the queue",
		Long: `Ship the crashes the collector leaves in the node's spool to the blob store
(each executable once per build ID) and queue them on JetStream; a spool
entry is deleted only once both confirmed. With --install-handler the agent
owns the node's core_pattern while it runs, re-installs it if someone
overwrites it, and restores the previous pattern on exit.`,
		Example: `  corepipe agent --spool /var/lib/corepipe/spool --install-handler \
    --blob 's3://corepipe/?endpoint=minio:9000' --nats nats://nats:4222
  corepipe agent --install-handler --max-core-size 2G --keep-free 10G --kube \
    --blob file:///var/lib/corepipe/blobs --nats nats://127.0.0.1:4222`,
		Args:    noArgs,
		PreRunE: required("blob", "nats"),
		RunE:    func(cmd *cobra.Command, _ []string) error { return runAgent(cmd.Context(), log, f) },
	}
	fset := cmd.Flags()
	fset.StringVar(&f.spool, "spool", "/var/lib/corepipe/spool", "the collector's spool `directory`")
	fset.StringVar(&f.blob, "blob", "", blobUsage)
	f.nats = natsFlagsOf(fset)
	fset.BoolVar(&f.install, "install-handler", false, "point the kernel's core_pattern at the collector until exit")
	fset.BoolVar(&f.force, "force", false, "with --install-handler: replace a core_pattern that belongs to another handler")
	fset.StringVar(&f.collectorBin, "collector", defaultCollector(), "the corepipe-collector `binary` to install")
	fset.StringVar(&f.stateFile, "state", "", "`file` where the previous core_pattern is kept (default: next to the spool)")
	f.limits = collectorFlagsOf(fset, false)
	f.kube = kubeFlagsOf(fset, nil)
	fset.StringVar(&f.crashOutput, "crash-output-dir", "/var/lib/corepipe/crash-output", "`directory` (shared with the pods as COREPIPE_CRASH_DIR) whose crash files, from services importing package crashout, become reports (empty: none)")
	f.agent = agentFlagsOf(fset)
	f.policy = corePolicyFlagsOf(fset)
	cmd.MarkFlagDirname("spool")
	cmd.MarkFlagFilename("collector")
	return cmd
}

func runAgent(ctx context.Context, log *slog.Logger, f *agentCmdFlags) error {
	reg := newRegistry()
	opts := []func(*agent.Config){withAgentMetrics(reg), withMaxBackoff(f.agent.maxBackoff)}
	// The handler first: while storage or the queue is unreachable, crashes
	// wait in the spool rather than go uncaught.
	if f.install {
		state := f.stateFile
		if state == "" {
			state = filepath.Join(filepath.Dir(filepath.Clean(f.spool)), "core_pattern.state")
		}
		bin, err := f.agent.collector(f.collectorBin)
		if err != nil {
			return err
		}
		restore, err := installHandler(log, bin, f.spool, state, f.force, *f.limits)
		if err != nil {
			return err
		}
		defer restore()
		opts = append(opts, withGuard(handlerGuard(bin, f.spool, state, f.force), f.agent.handlerCheck))
	}
	f.agent.netconsole.setup(log, f.kube.node)
	blobs, q, err := connect(ctx, f.blob, f.nats.url, f.nats.options()...)
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	parts, err := nodeAgent(log, f.spool, blobs, q, f.kube, f.policy, f.crashOutput, opts...)
	if err != nil {
		return err
	}
	return runAll(ctx, append(parts, f.agent.lastBoot(log, f.kube.node, blobs, q), func(ctx context.Context) error {
		return serveMetrics(ctx, f.agent.metricsListen, reg)
	})...)
}

// analyzerCmdFlags are `corepipe analyzer`'s flags.
type analyzerCmdFlags struct {
	blob          string
	nats          *natsFlags
	metricsListen string
	analyzer      *analyzerFlags
}

func analyzerCmd(log *slog.Logger) *cobra.Command {
	f := &analyzerCmdFlags{}
	cmd := &cobra.Command{
		Use:   "analyzer",
		Short: "analyse queued crashes",
		Long: `Pull crashes from JetStream, analyse each core in a child process with
memory and time limits, store the report, and acknowledge the crash only
then. A crash whose every attempt failed gets a failed report.`,
		Example: `  corepipe analyzer --blob 's3://corepipe/?endpoint=minio:9000' --nats nats://nats:4222 --workers 4
  corepipe analyzer --blob file:///srv/blobs --nats nats://127.0.0.1:4222 --analysis-memory 8G --analysis-timeout 20m`,
		Args:    noArgs,
		PreRunE: required("blob", "nats"),
		RunE:    func(cmd *cobra.Command, _ []string) error { return runAnalyzer(cmd.Context(), log, f) },
	}
	fset := cmd.Flags()
	fset.StringVar(&f.blob, "blob", "", blobUsage)
	f.nats = natsFlagsOf(fset)
	f.analyzer = analyzerFlagsOf(fset)
	fset.StringVar(&f.metricsListen, "metrics-listen", "", "serve Prometheus /metrics and /healthz on this `address` (empty: not served)")
	return cmd
}

func runAnalyzer(ctx context.Context, log *slog.Logger, f *analyzerCmdFlags) error {
	blobs, q, err := connect(ctx, f.blob, f.nats.url, append(f.nats.options(), natsq.MaxDeliver(analyzer.QueueMaxDeliver(f.analyzer.attempts)))...)
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	reg := newRegistry()
	an, err := newAnalyzer(log, *f.analyzer, blobs, q, reg)
	if err != nil {
		return err
	}
	return runAll(ctx, an.Run, func(ctx context.Context) error { return serveMetrics(ctx, f.metricsListen, reg) })
}

// apiCmdFlags are `corepipe api`'s flags.
type apiCmdFlags struct {
	blob    string
	nats    *natsFlags
	listen  string
	db      string
	durable string
	rebuild bool
	api     *apiFlags
}

func apiCmd(log *slog.Logger) *cobra.Command {
	f := &apiCmdFlags{}
	cmd := &cobra.Command{
		Use:   "api",
		Short: "index reports and serve the JSON API and web UI",
		Long: `Index the reports stream in SQLite and serve the JSON API, the web UI and
/metrics. The index is only a cache of the blob store: --rebuild refills it
from the stored reports, then follows the stream. Without --auth-file the
API listens on loopback only: cores hold secrets.`,
		Example: `  corepipe api --blob file:///srv/blobs --nats nats://127.0.0.1:4222
  corepipe api --blob 's3://corepipe/?endpoint=minio:9000' --nats nats://nats:4222 \
    --listen 0.0.0.0:8080 --db /data/index.db --auth-file /etc/corepipe/tokens --rebuild`,
		Args:    noArgs,
		PreRunE: required("blob", "nats"),
		RunE:    func(cmd *cobra.Command, _ []string) error { return runAPI(cmd.Context(), cmd.OutOrStdout(), log, f) },
	}
	fset := cmd.Flags()
	fset.StringVar(&f.blob, "blob", "", blobUsage)
	f.nats = natsFlagsOf(fset)
	fset.StringVar(&f.listen, "listen", "127.0.0.1:8080", "`address` of the API and web UI")
	fset.StringVar(&f.db, "db", "corepipe-index.db", "SQLite index `file`")
	fset.StringVar(&f.durable, "durable", "api", "`name` of this index's position in the reports stream")
	fset.BoolVar(&f.rebuild, "rebuild", false, "refill the index from the reports in the blob store, then follow the stream")
	f.api = apiFlagsOf(fset)
	cmd.MarkFlagFilename("db")
	return cmd
}

func runAPI(ctx context.Context, stdout io.Writer, log *slog.Logger, f *apiCmdFlags) error {
	tokens, err := f.api.tokens()
	if err != nil {
		return err
	}
	ln, err := api.Listen(f.listen, tokens)
	if err != nil {
		return err
	}
	defer ln.Close()
	blobs, q, err := connect(ctx, f.blob, f.nats.url, f.nats.options()...)
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	idx, err := sqlite.Open(f.db)
	if err != nil {
		return err
	}
	defer idx.Close()
	fmt.Fprintf(stdout, "corepipe: UI at http://%s/\n", ln.Addr())
	return apiPart(log, ln, idx, blobs, q, f.durable, apiSetup{tokens: tokens, web: f.api.web, rebuild: f.rebuild, metrics: newRegistry(), owners: f.api.owners, maxSymbolSize: f.api.maxSymbolSize, retain: f.api.retain})(ctx)
}
