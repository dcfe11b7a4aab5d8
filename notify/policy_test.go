package notify

import (
	"strconv"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

func TestDecide(t *testing.T) {
	p := Policy{Cooldown: time.Hour, SpikeCount: 3, SpikeWindow: time.Minute, MaxAge: 24 * time.Hour}.withDefaults()
	t0 := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	crash := func(at time.Duration, version string) *corepipe.Report {
		return &corepipe.Report{ID: corepipe.NewID(t0.Add(at)), Signature: "gocrash/v1:aa", Title: "boom",
			CapturedAt: t0.Add(at), Node: "n1", Go: &corepipe.GoInfo{MainVersion: version}}
	}
	type step struct {
		at     time.Duration // capture time, and the clock unless now is set
		now    time.Duration
		ver    string
		kind   Kind
		reason string
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"crash loop: one alert, the rest summarised, the spike held back", []step{
			{at: 0, kind: KindNew},
			{at: time.Second, reason: reasonSummarised},
			{at: 2 * time.Second, reason: reasonSummarised},
			{at: 3 * time.Second, reason: reasonCooldown}, // the 4th within a minute: a spike, but cooling down
			{at: 4 * time.Second, reason: reasonSummarised},
		}},
		{"spike after the cool-down, once per window", []step{
			{at: 0, kind: KindNew},
			{at: 2 * time.Hour, reason: reasonSummarised},
			{at: 2*time.Hour + time.Second, reason: reasonSummarised},
			{at: 2*time.Hour + 2*time.Second, reason: reasonSummarised},
			{at: 2*time.Hour + 3*time.Second, kind: KindSpike},
			{at: 2*time.Hour + 4*time.Second, reason: reasonSummarised},
		}},
		{"regression after a quiet period", []step{
			{at: 0, ver: "v1", kind: KindNew},
			{at: 48 * time.Hour, ver: "v2", kind: KindRegressed},
			{at: 48*time.Hour + time.Second, ver: "v2", reason: reasonSummarised},
		}},
		{"history is counted, not announced; the first fresh crash is", []step{
			{at: 0, now: 30 * 24 * time.Hour, reason: reasonStale},
			{at: time.Hour, now: 30 * 24 * time.Hour, reason: reasonStale},
			{at: 30*24*time.Hour - time.Minute, now: 30 * 24 * time.Hour, kind: KindNew},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs := &groupState{}
			for i, s := range tc.steps {
				now := s.now
				if now == 0 {
					now = s.at
				}
				ver := s.ver
				if ver == "" {
					ver = "v1"
				}
				kind, reason := p.decide(gs, crash(s.at, ver), t0.Add(now), nil)
				if kind != s.kind || reason != s.reason {
					t.Fatalf("step %d: (%q, %q), want (%q, %q)", i, kind, reason, s.kind, s.reason)
				}
			}
			if gs.Group.Count != int64(len(tc.steps)) {
				t.Errorf("group counted %d crashes, want %d", gs.Group.Count, len(tc.steps))
			}
		})
	}
}

func TestPendingSummary(t *testing.T) {
	t0 := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	gs := &groupState{}
	for _, sec := range []int{5, 1, 9, 3} {
		at := t0.Add(time.Duration(sec) * time.Second)
		r := &corepipe.Report{ID: corepipe.NewID(at), Signature: "gocrash/v1:aa", CapturedAt: at,
			Node: "n" + strconv.Itoa(sec), Container: &corepipe.Container{Namespace: "ns", Pod: "p"}}
		gs.Group.Observe(r)
		gs.addPending(r)
	}
	s := gs.summary()
	if s.Count != 4 || !s.Since.Equal(t0.Add(time.Second)) || !s.LastAt.Equal(t0.Add(9*time.Second)) || s.LastNode != "n9" || s.LastWorkload != "ns/p" || s.Total != 4 {
		t.Errorf("summary %+v", s)
	}
}
