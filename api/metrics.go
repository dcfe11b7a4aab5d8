package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corepipe/corepipe/internal/promreg"
)

// scrapeTimeout bounds what one /metrics scrape may spend asking the index
// and the stream about themselves.
const scrapeTimeout = 2 * time.Second

// httpMetrics counts and times requests by route pattern (never by raw
// path: IDs would make one series per crash) and status code.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer, s *Server) (*httpMetrics, error) {
	f, registered := promreg.Factory(reg)
	m := &httpMetrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corepipe_api_requests_total",
			Help: "HTTP requests served by the API and UI, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "corepipe_api_request_duration_seconds",
			Help:    "Time to serve a request until its handler returned, by route pattern and status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"route", "code"}),
	}
	if err := registered(); err != nil {
		return nil, err
	}
	if reg != nil {
		if err := reg.Register(&indexCollector{s: s}); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// instrument wraps the mux. The mux records the pattern it matched in the
// request, which is read back once the handler is done.
func (m *httpMetrics) instrument(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		// Deferred so that an aborted download (a panic the server
		// recovers) is counted too.
		defer func() {
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			code := strconv.Itoa(rec.status())
			m.requests.WithLabelValues(route, code).Inc()
			m.duration.WithLabelValues(route, code).Observe(time.Since(start).Seconds())
		}()
		mux.ServeHTTP(rec, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// sizer is an index that can say how big it is (sqlite.Index can).
type sizer interface {
	Size(ctx context.Context) (crashes, groups int64, err error)
}

var (
	crashesDesc = prometheus.NewDesc("corepipe_index_crashes", "Crashes in the index.", nil, nil)
	groupsDesc  = prometheus.NewDesc("corepipe_index_groups", "Crash groups in the index.", nil, nil)
	pendingDesc = prometheus.NewDesc("corepipe_index_pending_reports",
		"Reports in the stream not yet in the index: the index's lag behind the stream.", nil, nil)
	readyDesc = prometheus.NewDesc("corepipe_index_ready", "1 once the index has caught up with the stream.", nil, nil)
)

// indexCollector asks the index and the stream at scrape time, so that the
// numbers are never stale. A question that fails leaves its metric out of
// that scrape, and is logged.
type indexCollector struct{ s *Server }

func (c *indexCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- crashesDesc
	ch <- groupsDesc
	ch <- pendingDesc
	ch <- readyDesc
}

func (c *indexCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	ready := 0.0
	if c.s.ready() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready)
	if sz, ok := c.s.index.(sizer); ok {
		crashes, groups, err := sz.Size(ctx)
		if err != nil {
			c.s.log.Warn("metrics: index size", slog.Any("err", err))
		} else {
			ch <- prometheus.MustNewConstMetric(crashesDesc, prometheus.GaugeValue, float64(crashes))
			ch <- prometheus.MustNewConstMetric(groupsDesc, prometheus.GaugeValue, float64(groups))
		}
	}
	if c.s.pending != nil {
		n, err := c.s.pending(ctx)
		if err != nil {
			c.s.log.Warn("metrics: reports pending in the stream", slog.Any("err", err))
		} else {
			ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(n))
		}
	}
}
