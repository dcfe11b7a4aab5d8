package notify

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corepipe/corepipe/internal/promreg"
)

type metrics struct {
	sent       *prometheus.CounterVec
	failed     *prometheus.CounterVec
	suppressed *prometheus.CounterVec
	duplicates prometheus.Counter
	outbox     prometheus.Gauge
	lastDigest prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	f, registered := promreg.Factory(reg)
	m := &metrics{
		sent: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corepipe_notifier_messages_sent_total",
			Help: "Messages the sender accepted, by kind (new, regressed, spike, follow_up, digest).",
		}, []string{"kind"}),
		failed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corepipe_notifier_messages_failed_total",
			Help: "Messages refused for good and dropped, by kind.",
		}, []string{"kind"}),
		suppressed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corepipe_notifier_crashes_suppressed_total",
			Help: "Crashes not announced on their own, by reason: summarised (ongoing group, in the next follow-up or digest), cooldown (an alert held back), stale (older than the maximum age).",
		}, []string{"reason"}),
		duplicates: f.NewCounter(prometheus.CounterOpts{
			Name: "corepipe_notifier_reports_duplicate_total",
			Help: "Reports delivered again after they were handled, and ignored.",
		}),
		outbox: f.NewGauge(prometheus.GaugeOpts{
			Name: "corepipe_notifier_outbox_messages",
			Help: "Messages decided and waiting for delivery.",
		}),
		lastDigest: f.NewGauge(prometheus.GaugeOpts{
			Name: "corepipe_notifier_last_digest_timestamp_seconds",
			Help: "When the notifier last considered a digest, sent or empty, by its clock.",
		}),
	}
	if err := registered(); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return m, nil
}
