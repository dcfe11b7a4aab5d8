package analyzer

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the analyzer's Prometheus metrics, registered only when the
// Config has a Registerer.
type metrics struct {
	reports *prometheus.CounterVec
	// reanalysesFailed counts re-analyses that kept the previous report.
	reanalysesFailed prometheus.Counter
	retries          prometheus.Counter
	duration         prometheus.Histogram
	inFlight         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		reports: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corepipe_analyzer_reports_total",
			Help: "Reports stored, by status (analyzed, failed).",
		}, []string{"status"}),
		reanalysesFailed: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_analyzer_reanalyses_failed_total",
			Help: "Re-analyses (corepipe reanalyze) that failed for good and left the previous report in place.",
		}),
		retries: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_analyzer_retries_total",
			Help: "Analyses that failed for a reason that may pass and were queued again.",
		}),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "corepipe_analyzer_analysis_seconds",
			Help:    "Time from taking a crash off the queue to its report being stored.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "corepipe_analyzer_in_flight",
			Help: "Crashes being analysed now.",
		}),
	}
	for _, s := range []string{"analyzed", "failed"} {
		m.reports.WithLabelValues(s)
	}
	return m
}
