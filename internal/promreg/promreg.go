// Package promreg declares Prometheus metrics with promauto where a
// registration conflict must be an error the caller returns, not
// promauto's panic: two servers wired to one registry are a mistake said at
// start-up, not a crash.
package promreg

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Factory returns promauto's factory over reg, and a function returning the
// first error of registering what it made. A nil reg registers nothing.
func Factory(reg prometheus.Registerer) (promauto.Factory, func() error) {
	if reg == nil {
		return promauto.With(nil), func() error { return nil }
	}
	r := &recorder{reg: reg}
	return promauto.With(r), func() error { return r.err }
}

// recorder is a Registerer whose MustRegister records instead of panicking.
type recorder struct {
	reg prometheus.Registerer
	err error
}

func (r *recorder) Register(c prometheus.Collector) error {
	err := r.reg.Register(c)
	if err != nil && r.err == nil {
		r.err = err
	}
	return err
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		r.Register(c)
	}
}

func (r *recorder) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }
