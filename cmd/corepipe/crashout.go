package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/kube"
)

// crashOutputs collects the crash files of services that import package
// crashout from dir ("" collects none), recording each crash through ag.
func crashOutputs(log *slog.Logger, dir, node string, blobs corepipe.BlobStore, ag *agent.Agent, pods *kube.Watcher) func(context.Context) error {
	return func(ctx context.Context) error {
		if dir == "" {
			<-ctx.Done()
			return nil
		}
		if node == "" {
			node, _ = os.Hostname()
		}
		co := &agent.CrashOutputs{Dir: dir, Node: node, Blobs: blobs, Recorder: ag, Logger: log.With("part", "crash-output")}
		if pods != nil {
			co.Enricher = pods
		}
		return co.Run(ctx)
	}
}
