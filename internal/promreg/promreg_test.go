package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestConflictIsAnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "promreg_test_total", Help: "A test counter."}
	f, registered := Factory(reg)
	c := f.NewCounter(opts)
	if err := registered(); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	c.Inc()
	f2, registered2 := Factory(reg)
	f2.NewCounter(opts)
	if registered2() == nil {
		t.Error("the same metric registered twice: no error")
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Errorf("gathered %v, %v: want the first counter", mfs, err)
	}
}

func TestNilRegistersNothing(t *testing.T) {
	f, registered := Factory(nil)
	f.NewCounter(prometheus.CounterOpts{Name: "promreg_test_total", Help: "A test counter."}).Inc()
	if err := registered(); err != nil {
		t.Error(err)
	}
}
