package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/api"
	"github.com/corepipe/corepipe/blob"
	"github.com/corepipe/corepipe/collector/agent"
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

func runAgent(ctx context.Context, log *slog.Logger, args []string) error {
	fset := flag.NewFlagSet("agent", flag.ContinueOnError)
	spool := fset.String("spool", "/var/lib/corepipe/spool", "the collector's spool directory")
	blobURL := fset.String("blob", "", "blob store URL (file:///path or s3://bucket/prefix?endpoint=host:port)")
	natsURL := fset.String("nats", "", "NATS URL")
	install := fset.Bool("install-handler", false, "point the kernel's core_pattern at the collector until exit")
	force := fset.Bool("force", false, "with --install-handler: replace a core_pattern that belongs to another handler")
	collectorBin := fset.String("collector", defaultCollector(), "the corepipe-collector binary to install")
	stateFile := fset.String("state", "", "where the previous core_pattern is kept (default: next to the spool)")
	limits := collectorFlagsOf(fset, false)
	kf := kubeFlagsOf(fset)
	af := agentFlagsOf(fset)
	if err := parse(fset, args); err != nil {
		return err
	}
	reg := newRegistry()
	opts := []func(*agent.Config){withAgentMetrics(reg), withMaxBackoff(af.maxBackoff)}
	// The handler first: while storage or the queue is unreachable, crashes
	// wait in the spool rather than go uncaught.
	if *install {
		state := *stateFile
		if state == "" {
			state = filepath.Join(filepath.Dir(filepath.Clean(*spool)), "core_pattern.state")
		}
		bin, err := af.collector(*collectorBin)
		if err != nil {
			return err
		}
		restore, err := installHandler(log, bin, *spool, state, *force, *limits)
		if err != nil {
			return err
		}
		defer restore()
		opts = append(opts, withGuard(handlerGuard(bin, *spool, state, *force), af.handlerCheck))
	}
	blobs, q, err := connect(ctx, *blobURL, *natsURL)
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	pods, err := kf.watcher(log, blobs)
	if err != nil {
		return err
	}
	ag, err := newAgent(log, *spool, blobs, q, append(opts, withWatcher(pods))...)
	if err != nil {
		return err
	}
	return runAll(ctx, ag.Run, runWatcher(pods, ag), func(ctx context.Context) error {
		return serveMetrics(ctx, af.metricsListen, reg)
	})
}

func runAnalyzer(ctx context.Context, log *slog.Logger, args []string) error {
	fset := flag.NewFlagSet("analyzer", flag.ContinueOnError)
	blobURL := fset.String("blob", "", "blob store URL")
	natsURL := fset.String("nats", "", "NATS URL")
	af := analyzerFlagsOf(fset)
	metricsAddr := fset.String("metrics-listen", "", "serve Prometheus /metrics and /healthz on this `address` (empty: not served)")
	if err := parse(fset, args); err != nil {
		return err
	}
	blobs, q, err := connect(ctx, *blobURL, *natsURL, natsq.MaxDeliver(analyzer.QueueMaxDeliver(af.attempts)))
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	reg := newRegistry()
	an, err := newAnalyzer(log, *af, blobs, q, reg)
	if err != nil {
		return err
	}
	return runAll(ctx, an.Run, func(ctx context.Context) error { return serveMetrics(ctx, *metricsAddr, reg) })
}

func runAPI(ctx context.Context, log *slog.Logger, args []string) error {
	fset := flag.NewFlagSet("api", flag.ContinueOnError)
	blobURL := fset.String("blob", "", "blob store URL")
	natsURL := fset.String("nats", "", "NATS URL")
	addr := fset.String("listen", "127.0.0.1:8080", "address of the API and web UI")
	db := fset.String("db", "corepipe-index.db", "SQLite index file")
	durable := fset.String("durable", "api", "name of this index's position in the reports stream")
	rebuild := fset.Bool("rebuild", false, "refill the index from the reports in the blob store, then follow the stream")
	af := apiFlagsOf(fset)
	if err := parse(fset, args); err != nil {
		return err
	}
	tokens, err := af.tokens()
	if err != nil {
		return err
	}
	ln, err := api.Listen(*addr, tokens)
	if err != nil {
		return err
	}
	defer ln.Close()
	blobs, q, err := connect(ctx, *blobURL, *natsURL)
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	idx, err := sqlite.Open(*db)
	if err != nil {
		return err
	}
	defer idx.Close()
	fmt.Printf("corepipe: UI at http://%s/\n", ln.Addr())
	return apiPart(log, ln, idx, blobs, q, *durable, apiSetup{tokens: tokens, rebuild: *rebuild, metrics: newRegistry()})(ctx)
}
