package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/internal/size"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// corePolicyFlags are the fleet's core policy (issue 16), on `corepipe
// agent` and `corepipe dev`.
type corePolicyFlags struct {
	perSignature   int
	window         time.Duration
	analyzeOnNode  bool
	ttl            time.Duration
	analysisMemory int64
	analysisTime   time.Duration
}

func corePolicyFlagsOf(fset *pflag.FlagSet) *corePolicyFlags {
	f := &corePolicyFlags{analysisMemory: 2 << 30}
	fset.IntVar(&f.perSignature, "cores-per-signature", 0, "ship only the first N cores per signature and build per --cores-window across the fleet; every crash still gets its report, the other cores stay on their node for --node-core-ttl (0: ship every core)")
	fset.DurationVar(&f.window, "cores-window", time.Hour, "the window of --cores-per-signature")
	fset.BoolVar(&f.analyzeOnNode, "analyze-on-node", true, "with --cores-per-signature: analyse each core on the node (one at a time, nice'd, memory-capped) to decide by its signature; false decides by build ID and signal and leaves analysis to the analyzers")
	fset.DurationVar(&f.ttl, "node-core-ttl", agent.DefaultNodeCoreTTL, "with --cores-per-signature: how long a core that was not shipped stays in the node's spool, where it can be requested (within the spool's limits)")
	fset.Var((*size.Value)(&f.analysisMemory), "node-analysis-memory", "with --analyze-on-node: address-space limit of the analysis child on the node")
	fset.DurationVar(&f.analysisTime, "node-analysis-timeout", 5*time.Minute, "with --analyze-on-node: wall-time (and CPU-time) limit of one analysis on the node")
	return f
}

// nodeAnalysisNice is how far below the node's workloads its analyses run.
const nodeAnalysisNice = 10

// policy is the agent's core policy, nil without --cores-per-signature.
func (f *corePolicyFlags) policy(q *natsq.Queue) (*agent.CorePolicy, error) {
	if f.perSignature <= 0 {
		return nil, nil
	}
	quota, err := q.CoreQuota(f.perSignature, f.window)
	if err != nil {
		return nil, fmt.Errorf("--cores-per-signature: %w", err)
	}
	if f.ttl <= 0 {
		return nil, fmt.Errorf("--node-core-ttl %v: want a positive duration", f.ttl)
	}
	p := &agent.CorePolicy{Quota: quota, TTL: f.ttl, Queue: q}
	if f.analyzeOnNode {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable for the analysis on the node: %w", err)
		}
		p.Analyser = analyzer.Local{Inspector: analyzer.Child{
			Command:   []string{self, "analyze"},
			MaxMemory: uint64(f.analysisMemory),
			MaxCPU:    f.analysisTime,
			MaxReport: analyzer.DefaultMaxReport,
			Timeout:   f.analysisTime,
			Nice:      nodeAnalysisNice,
		}}
		p.Rule = fmt.Sprintf("%d cores per signature and build per %v", f.perSignature, f.window)
	} else {
		p.Rule = fmt.Sprintf("%d cores per build and signal per %v", f.perSignature, f.window)
	}
	return p, nil
}

func withPolicy(p *agent.CorePolicy) func(*agent.Config) {
	return func(c *agent.Config) { c.Policy = p }
}

// coreRequests uploads the kept cores debuggers ask this node for, until
// ctx ends; without a policy the node keeps none and listens to nothing.
func coreRequests(log *slog.Logger, q *natsq.Queue, p *agent.CorePolicy, node string, ag *agent.Agent) func(context.Context) error {
	return func(ctx context.Context) error {
		if p == nil {
			<-ctx.Done()
			return nil
		}
		if node == "" {
			node, _ = os.Hostname()
		}
		log = log.With("part", "core-requests", "node", node)
		for {
			err := q.CoreRequests(ctx, node, func(ctx context.Context, r natsq.CoreRequest) {
				err := ag.UploadKept(ctx, r.ID)
				switch {
				case errors.Is(err, corepipe.ErrNotFound):
					log.Info("core requested, no longer on the node", corepipe.LogKeyCrash, r.ID)
				case err != nil:
					// Not acked: the request comes back after its ack wait.
					log.Warn("upload requested core", corepipe.LogKeyCrash, r.ID, "err", err)
					return
				}
				if err := r.Ack(); err != nil {
					log.Warn("ack core request", corepipe.LogKeyCrash, r.ID, "err", err)
				}
			})
			if ctx.Err() != nil {
				return nil
			}
			// NATS away at start: the agent ships on, requests wait in
			// their stream.
			log.Warn("core requests unavailable, retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
	}
}
