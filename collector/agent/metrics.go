package agent

import (
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/corepipe/corepipe/collector/spool"
)

// metrics are the agent's Prometheus metrics. They are always counted;
// registered only when the Config has a Registerer.
type metrics struct {
	captured    prometheus.Counter
	dropped     *prometheus.CounterVec
	truncated   prometheus.Counter
	uploaded    prometheus.Counter
	bytes       prometheus.Counter
	retries     prometheus.Counter
	spoolBytes  prometheus.Gauge
	waiting     prometheus.Gauge
	oldest      prometheus.Gauge
	reinstalls  prometheus.Counter
	quarantined prometheus.Counter
	// The fleet's core policy.
	decisions    *prometheus.CounterVec
	nodeAnalysis prometheus.Histogram
	requested    prometheus.Counter
	keptExpired  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		captured: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_agent_crashes_captured_total",
			Help: "Crashes the collector committed to the spool, counted when the agent first sees them.",
		}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corepipe_agent_cores_dropped_total",
			Help: "Crashes whose core the collector did not keep, by the manifest's reason (rlimit_core=0, spool_full, rate_limited, write_failed).",
		}, []string{"reason"}),
		truncated: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_agent_cores_truncated_total",
			Help: "Crashes whose core was kept only in part (max core size, RLIMIT_CORE, spool limits, deadline).",
		}),
		uploaded: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_agent_crashes_uploaded_total",
			Help: "Crashes stored and queued, and removed from the spool.",
		}),
		bytes: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_agent_uploaded_bytes_total",
			Help: "Bytes of compressed cores and executables written to the blob store.",
		}),
		retries: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_agent_retries_total",
			Help: "Failed attempts to ship a crash, each retried after a backoff (storage or queue down).",
		}),
		spoolBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "corepipe_agent_spool_bytes",
			Help: "Bytes of files in the spool.",
		}),
		waiting: f.NewGauge(prometheus.GaugeOpts{
			Name: "corepipe_agent_spool_entries",
			Help: "Committed crashes waiting in the spool to be shipped.",
		}),
		oldest: f.NewGauge(prometheus.GaugeOpts{
			Name: "corepipe_agent_oldest_waiting_seconds",
			Help: "Age of the oldest crash waiting in the spool, 0 when none waits.",
		}),
		reinstalls: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_agent_handler_reinstalls_total",
			Help: "Times the kernel's core_pattern was found overwritten and the collector installed again.",
		}),
		decisions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corepipe_agent_core_decisions_total",
			Help: "What the fleet's core policy decided for each core: shipped (admitted), kept (on the node, over the quota), quota_unavailable and analysis_failed (shipped), no_executable (shipped unanalysed).",
		}, []string{"decision"}),
		nodeAnalysis: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "corepipe_agent_node_analysis_seconds",
			Help:    "Wall time of each analysis of a core on the node.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 12),
		}),
		requested: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_agent_kept_cores_uploaded_total",
			Help: "Cores kept on the node and uploaded on a debugger's request.",
		}),
		keptExpired: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_agent_kept_cores_removed_total",
			Help: "Cores kept on the node and removed, at their TTL or early for the spool's limits.",
		}),
		quarantined: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_agent_quarantined_total",
			Help: "Spool entries that could not be shipped (no or a corrupt manifest) and were moved to the spool's quarantine directory.",
		}),
	}
	for _, d := range []string{"shipped", "kept", "quota_unavailable", "analysis_failed", "no_executable"} {
		m.decisions.WithLabelValues(d)
	}
	for _, reason := range []string{spool.DroppedRlimit, spool.DroppedSpoolFull, spool.DroppedRateLimited, spool.DroppedWrite, spool.DroppedBusy} {
		m.dropped.WithLabelValues(reason)
	}
	return m
}

// observe counts the entries seen for the first time, from their manifests.
// seen is the set of IDs counted before; it is
// replaced by the IDs present now, so it never outgrows the spool.
func (a *Agent) observe(entries []spool.Entry) {
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		seen[e.ID] = true
		if a.seen[e.ID] {
			continue
		}
		a.m.captured.Inc()
		c, err := e.Manifest()
		if err != nil {
			// Ship reports it; nothing to count by.
			continue
		}
		if c.Core.Dropped != "" {
			a.m.dropped.WithLabelValues(c.Core.Dropped).Inc()
		}
		if c.Core.Truncated {
			a.m.truncated.Inc()
		}
	}
	a.seen = seen
}

// waiting sets the spool gauges from the entries still waiting, oldest
// first.
func (a *Agent) waiting(entries []spool.Entry, now time.Time) {
	a.m.waiting.Set(float64(len(entries)))
	a.m.oldest.Set(0)
	if len(entries) > 0 {
		if id, err := ulid.ParseStrict(entries[0].ID); err == nil {
			a.m.oldest.Set(max(0, now.Sub(ulid.Time(id.Time())).Seconds()))
		}
	}
	if n, err := a.cfg.Spool.Usage(); err == nil {
		a.m.spoolBytes.Set(float64(n))
	}
}
