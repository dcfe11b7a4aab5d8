package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/api"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/size"
	natsq "github.com/corepipe/corepipe/queue/nats"
	"github.com/corepipe/corepipe/sqlite"
)

// devFlags are `corepipe dev`'s flags: its own, and those of every part it
// runs.
type devFlags struct {
	data         string
	listen       string
	install      bool
	force        bool
	collectorBin string
	analyzer     *analyzerFlags
	limits       *spool.Settings
	notifier     *notifierFlags
	api          *apiFlags
	kube         *kubeFlags
	crashOutput  string
	netconsole   string
	receiver     *netconsoleFlags
	policy       *corePolicyFlags
}

func devCmd(log *slog.Logger) *cobra.Command {
	f := &devFlags{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "run the whole pipeline in one process on embedded defaults",
		Long: `Run the whole pipeline in one process: the agent, an analyzer, the API and
web UI, and the notifier when Slack is configured, on an embedded NATS
server and a filesystem blob store under --data. With --install-handler (as
root) the kernel's core_pattern points at the collector until exit, when
the previous one is put back.`,
		Example: `  corepipe dev --install-handler                        # catch this machine's crashes
  corepipe dev --data /tmp/crashes --listen 127.0.0.1:9000
  COREPIPE_SLACK_WEBHOOK=https://hooks.slack.com/... corepipe dev --install-handler`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), cmd.OutOrStdout(), log, f)
		},
	}
	fset := cmd.Flags()
	fset.StringVar(&f.data, "data", "corepipe-data", "`directory` for the spool, blobs, queue and index")
	fset.StringVar(&f.listen, "listen", "127.0.0.1:8080", "`address` of the API and web UI")
	fset.BoolVar(&f.install, "install-handler", false, "point the kernel's core_pattern at the collector until exit (root)")
	fset.BoolVar(&f.force, "force", false, "with --install-handler: replace a core_pattern that belongs to another handler")
	fset.StringVar(&f.collectorBin, "collector", defaultCollector(), "the corepipe-collector `binary` to install")
	f.analyzer = analyzerFlagsOf(fset)
	// A developer's shell has RLIMIT_CORE 0 by default; that is no reason to
	// miss the crash they are looking for.
	f.limits = collectorFlagsOf(fset, true)
	f.notifier = notifierFlagsOf(fset)
	f.api = apiFlagsOf(fset)
	f.kube = kubeFlagsOf(fset, &f.notifier.uiURL)
	fset.StringVar(&f.crashOutput, "crash-output-dir", "", "`directory` whose crash files (from services importing package crashout) become reports (default <data>/crash-output)")
	fset.StringVar(&f.netconsole, "netconsole", "", "`ADDR:PORT` to receive nodes' kernel logs on over netconsole (UDP), recording their panics (default: none)")
	f.receiver = netconsoleFlagsOf(fset)
	f.policy = corePolicyFlagsOf(fset)
	cmd.MarkFlagDirname("data")
	cmd.MarkFlagFilename("collector")
	return cmd
}

func runDev(ctx context.Context, stdout io.Writer, log *slog.Logger, f *devFlags) error {
	tokens, err := f.api.tokens()
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(f.data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	spool := filepath.Join(dir, "spool")

	ln, err := api.Listen(f.listen, tokens)
	if err != nil {
		return err
	}
	defer ln.Close()

	emb, err := natsq.StartEmbedded(natsq.EmbeddedOptions{StoreDir: filepath.Join(dir, "nats"), Host: "127.0.0.1", Port: -1})
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	defer emb.Shutdown()
	q, err := natsq.Open(ctx, emb.ClientURL(), natsq.MaxDeliver(analyzer.QueueMaxDeliver(f.analyzer.attempts)))
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	blobs, err := fs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		return err
	}
	idx, err := sqlite.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		return err
	}
	defer idx.Close()

	reg := newRegistry()
	stateFile := filepath.Join(dir, "core_pattern.state")
	agentOpts := []func(*agent.Config){withAgentMetrics(reg)}
	if f.install {
		agentOpts = append(agentOpts, withGuard(handlerGuard(f.collectorBin, spool, stateFile, f.force), time.Minute))
	}
	if f.crashOutput == "" {
		f.crashOutput = filepath.Join(dir, "crash-output")
	}
	parts, err := nodeAgent(log, spool, blobs, q, f.kube, f.policy, f.crashOutput, agentOpts...)
	if err != nil {
		return err
	}
	an, err := newAnalyzer(log, *f.analyzer, blobs, q, reg)
	if err != nil {
		return err
	}
	if f.install {
		restore, err := installHandler(log, f.collectorBin, spool, stateFile, f.force, *f.limits)
		if err != nil {
			return err
		}
		defer restore()
	}
	f.notifier.owners = f.api.owners
	notifier, err := devNotifier(log, f.notifier, q, dir, ln.Addr().String(), idx, reg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "corepipe: UI at http://%s/\n", ln.Addr())
	kpanic, err := kpanicPart(log, f.netconsole, f.receiver, f.kube, blobs, q, idx)
	if err != nil {
		return err
	}
	return runAll(ctx, append(parts, kpanic, an.Run, apiPart(log, ln, idx, blobs, q, "api", apiSetup{tokens: tokens, web: f.api.web, metrics: reg, owners: f.api.owners, maxSymbolSize: f.api.maxSymbolSize, retain: f.api.retain}), notifier)...)
}

func analyzerFlagsOf(fset *pflag.FlagSet) *analyzerFlags {
	f := &analyzerFlags{maxMemory: 4 << 30, maxCore: analyzer.DefaultMaxCoreSize}
	fset.IntVar(&f.workers, "workers", 1, "crashes analysed at once")
	fset.IntVar(&f.attempts, "attempts", 5, "analysis attempts per crash before it gets a failed report")
	fset.Var((*size.Value)(&f.maxMemory), "analysis-memory", "address-space limit of each analysis child (0: none)")
	fset.DurationVar(&f.timeout, "analysis-timeout", 10*time.Minute, "wall-time limit of each analysis, and of its CPU time")
	fset.Var((*size.Value)(&f.maxCore), "analysis-max-core", "largest core an analysis decompresses; no core expands beyond the size its manifest declares either")
	fset.Var((*debuginfodURLs)(&f.debuginfod), "debuginfod", "`URL` of a debuginfod server asked for the debug files the symbol store lacks, after it (repeatable; default: $DEBUGINFOD_URLS)")
	fset.DurationVar(&f.debuginfodTimeout, "debuginfod-timeout", analyzer.DefaultDebuginfodTimeout, "how long a debuginfod server has to answer, download included")
	f.debuginfodMaxSize = analyzer.DefaultDebuginfodMaxSize
	fset.Var((*size.Value)(&f.debuginfodMaxSize), "debuginfod-max-size", "largest debug file taken from a debuginfod server")
	fset.StringVar(&f.debuginfodCache, "debuginfod-cache", "", "`directory` of the debug files fetched from debuginfod servers, by build ID (default: corepipe-debuginfod in the temporary directory)")
	f.debuginfodCacheSize = analyzer.DefaultDebuginfodCacheSize
	fset.Var((*size.Value)(&f.debuginfodCacheSize), "debuginfod-cache-size", "bound of the debuginfod cache: the least recently used files are removed past it")
	return f
}
