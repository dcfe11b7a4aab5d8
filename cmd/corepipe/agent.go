package main

import (
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/collector/corepattern"
)

// agentFlags are the node agent's own flags, beyond the spool and limits.
type agentFlags struct {
	installTo     string
	metricsListen string
	maxBackoff    time.Duration
	handlerCheck  time.Duration
	netconsole    *netconsoleTargetFlags
}

func agentFlagsOf(fset *pflag.FlagSet) *agentFlags {
	f := &agentFlags{}
	fset.StringVar(&f.installTo, "install-collector-to", "", "with --install-handler: copy the collector into this host `directory` first and install that copy (a DaemonSet's hostPath)")
	fset.StringVar(&f.metricsListen, "metrics-listen", "", "serve Prometheus /metrics on this `address` (empty: not served)")
	fset.DurationVar(&f.maxBackoff, "max-backoff", 30*time.Second, "longest wait between retries while storage or the queue is down")
	fset.DurationVar(&f.handlerCheck, "handler-check", time.Minute, "with --install-handler: how often to check that core_pattern is still the collector's, and install it again if not")
	f.netconsole = netconsoleTargetFlagsOf(fset)
	return f
}

// collector returns the collector binary to install: bin itself, or its
// copy in --install-collector-to. core_pattern runs it in the host's mount
// namespace, where an agent container's own files are not visible.
func (f *agentFlags) collector(bin string) (string, error) {
	if f.installTo == "" {
		return bin, nil
	}
	return corepattern.InstallBinary(bin, f.installTo)
}

// handlerGuard is the installation installHandler makes of collectorPath for
// spool, which the agent keeps in place while it runs.
func handlerGuard(collectorPath, spool, stateFile string, force bool) *agent.Guard {
	if abs, err := filepath.Abs(collectorPath); err == nil {
		collectorPath = abs
	}
	if abs, err := filepath.Abs(spool); err == nil {
		spool = abs
	}
	return &agent.Guard{
		Handler: corepattern.Handler{StateFile: stateFile, Force: force},
		Want:    corepattern.Settings{Pattern: corepattern.Pattern(collectorPath, spool), PipeLimit: pipeLimit},
	}
}

// withGuard makes the agent keep g installed, checking every every.
func withGuard(g *agent.Guard, every time.Duration) func(*agent.Config) {
	return func(c *agent.Config) {
		g.Every = every
		c.Guard = g
	}
}

// withAgentMetrics registers the agent's metrics on reg: the registry its
// process serves on /metrics (the agent's --metrics-listen, or the API's in
// `corepipe dev`).
func withAgentMetrics(reg prometheus.Registerer) func(*agent.Config) {
	return func(c *agent.Config) { c.Registerer = reg }
}

// withMaxBackoff bounds the wait between retries.
func withMaxBackoff(d time.Duration) func(*agent.Config) {
	return func(c *agent.Config) { c.MaxBackoff = d }
}
