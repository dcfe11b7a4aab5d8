package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/api"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/collector/agent"
	natsq "github.com/corepipe/corepipe/queue/nats"
	"github.com/corepipe/corepipe/sqlite"
)

func runDev(ctx context.Context, log *slog.Logger, args []string) error {
	fset := flag.NewFlagSet("dev", flag.ContinueOnError)
	data := fset.String("data", "corepipe-data", "directory for the spool, blobs, queue and index")
	addr := fset.String("listen", "127.0.0.1:8080", "address of the API and web UI")
	install := fset.Bool("install-handler", false, "point the kernel's core_pattern at the collector until exit (root)")
	force := fset.Bool("force", false, "with --install-handler: replace a core_pattern that belongs to another handler")
	collectorBin := fset.String("collector", defaultCollector(), "the corepipe-collector binary to install")
	af := analyzerFlagsOf(fset)
	// A developer's shell has RLIMIT_CORE 0 by default; that is no reason to
	// miss the crash they are looking for.
	limits := collectorFlagsOf(fset, true)
	nf := notifierFlagsOf(fset)
	apf := apiFlagsOf(fset)
	if err := parse(fset, args); err != nil {
		return err
	}
	tokens, err := apf.tokens()
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(*data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	spool := filepath.Join(dir, "spool")

	ln, err := api.Listen(*addr, tokens)
	if err != nil {
		return err
	}
	defer ln.Close()

	emb, err := natsq.StartEmbedded(natsq.EmbeddedOptions{StoreDir: filepath.Join(dir, "nats"), Host: "127.0.0.1", Port: -1})
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	defer emb.Shutdown()
	q, err := natsq.Open(ctx, emb.ClientURL(), natsq.MaxDeliver(analyzer.QueueMaxDeliver(af.attempts)))
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
	if *install {
		agentOpts = append(agentOpts, withGuard(handlerGuard(*collectorBin, spool, stateFile, *force), time.Minute))
	}
	ag, err := newAgent(log, spool, blobs, q, agentOpts...)
	if err != nil {
		return err
	}
	an, err := newAnalyzer(log, *af, blobs, q, reg)
	if err != nil {
		return err
	}
	if *install {
		restore, err := installHandler(log, *collectorBin, spool, stateFile, *force, *limits)
		if err != nil {
			return err
		}
		defer restore()
	}
	notifier, err := devNotifier(log, nf, q, dir, ln.Addr().String(), reg)
	if err != nil {
		return err
	}
	fmt.Printf("corepipe: UI at http://%s/\n", ln.Addr())
	return runAll(ctx, ag.Run, an.Run, apiPart(log, ln, idx, blobs, q, "api", apiSetup{tokens: tokens, metrics: reg}), notifier)
}

func analyzerFlagsOf(fset *flag.FlagSet) *analyzerFlags {
	f := &analyzerFlags{}
	fset.IntVar(&f.workers, "workers", 1, "crashes analysed at once")
	fset.IntVar(&f.attempts, "attempts", 5, "analysis attempts per crash before it gets a failed report")
	fset.Uint64Var(&f.maxMemory, "analysis-memory", 4<<30, "address-space limit of each analysis child, in bytes (0: none)")
	fset.DurationVar(&f.timeout, "analysis-timeout", 10*time.Minute, "wall-time limit of each analysis")
	return f
}
