package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/netconsole"
)

// agentFlags are the node agent's own flags, beyond the spool and limits.
type agentFlags struct {
	installTo     string
	metricsListen string
	maxBackoff    time.Duration
	handlerCheck  time.Duration
	netconsole    *netconsoleTargetFlags
	previousBoot  lastBootFlags
}

// lastBootFlags say where the previous boot's kernel panic is looked for.
type lastBootFlags struct {
	pstore, systemdPstore, kdump string
}

func agentFlagsOf(fset *pflag.FlagSet) *agentFlags {
	f := &agentFlags{}
	fset.StringVar(&f.installTo, "install-collector-to", "", "with --install-handler: copy the collector into this host `directory` first and install that copy (a DaemonSet's hostPath)")
	fset.StringVar(&f.metricsListen, "metrics-listen", "", "serve Prometheus /metrics on this `address` (empty: not served)")
	fset.DurationVar(&f.maxBackoff, "max-backoff", 30*time.Second, "longest wait between retries while storage or the queue is down")
	fset.DurationVar(&f.handlerCheck, "handler-check", time.Minute, "with --install-handler: how often to check that core_pattern is still the collector's, and install it again if not")
	f.netconsole = netconsoleTargetFlagsOf(fset)
	fset.StringVar(&f.previousBoot.pstore, "pstore", "/sys/fs/pstore", "`directory` pstore is mounted on: the previous boot's kernel panic is recorded from it, and its records removed once stored and queued (empty: not read)")
	fset.StringVar(&f.previousBoot.systemdPstore, "systemd-pstore", "/var/lib/systemd/pstore", "systemd-pstore's archive `directory`, read for the previous boot's kernel panic, never changed (empty: not read)")
	fset.StringVar(&f.previousBoot.kdump, "kdump", "/var/crash", "kdump's dump `directory`, whose <stamp>/dmesg.* files are read for kernel panics, never changed (empty: not read)")
	return f
}

// lastBoot records the kernel panics the node's previous boot left, with
// the recorder the netconsole receiver uses: the same panic is the same
// crash from either side of the reboot.
func (f *agentFlags) lastBoot(log *slog.Logger, node string, blobs corepipe.BlobStore, q netconsole.Publisher) func(context.Context) error {
	if node == "" {
		node, _ = os.Hostname()
	}
	log = log.With("part", "lastboot")
	b := &agent.LastBoot{
		Pstore: f.previousBoot.pstore, SystemdPstore: f.previousBoot.systemdPstore, Kdump: f.previousBoot.kdump, Node: node,
		Recorder: &netconsole.Recorder{Blobs: blobs, Queue: q, Logger: log}, MaxBackoff: f.maxBackoff, Logger: log,
	}
	return b.Run
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
