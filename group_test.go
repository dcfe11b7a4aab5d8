package corepipe

import (
	"testing"
	"time"
)

func crashAt(t time.Time, version string) *Report {
	return &Report{Signature: "gocrash/v1:ab", Title: "nil pointer dereference in main.f", CapturedAt: t,
		Node: "n1", Process: Process{Exe: "/app"}, Go: &GoInfo{MainVersion: version}}
}

func TestGroupObserve(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var g Group
	steps := []struct {
		at      time.Duration
		version string
		want    GroupStatus
	}{
		{0, "v1.0.0", GroupNew},
		{time.Minute, "v1.0.0", GroupOngoing},
		{time.Hour, "v1.1.0", GroupOngoing},         // new build, but never quiet
		{30 * time.Minute, "v1.0.0", GroupOngoing},  // late arrival moves nothing
		{49 * time.Hour, "v1.1.0", GroupOngoing},    // quiet, same build as last seen
		{100 * time.Hour, "v1.2.0", GroupRegressed}, // quiet, then a newer build
		{100*time.Hour + time.Second, "v1.2.0", GroupOngoing},
	}
	for i, s := range steps {
		if got := g.Observe(crashAt(t0.Add(s.at), s.version)); got != s.want {
			t.Fatalf("step %d (%v, %s): status %s, want %s", i, s.at, s.version, got, s.want)
		}
	}
	if g.Count != int64(len(steps)) || g.FirstVersion != "v1.0.0" || g.LastVersion != "v1.2.0" || !g.FirstSeen.Equal(t0) {
		t.Errorf("group %+v", g)
	}
	if len(g.Nodes) != 1 || len(g.Workloads) != 1 {
		t.Errorf("places %v %v", g.Nodes, g.Workloads)
	}
}

func TestReportVersion(t *testing.T) {
	for _, tc := range []struct {
		r    Report
		want string
	}{
		{Report{Go: &GoInfo{MainVersion: "v1.2.3", VCSRevision: "abc"}}, "v1.2.3"},
		{Report{Go: &GoInfo{MainVersion: "(devel)", VCSRevision: "abc"}}, "abc"},
		{Report{Go: &GoInfo{BuildID: "b/i/d"}}, "b/i/d"},
		{Report{Artifacts: Artifacts{Executable: ExeArtifact{SHA256: "ff"}}}, "ff"},
	} {
		if got := tc.r.Version(); got != tc.want {
			t.Errorf("Version() = %q, want %q", got, tc.want)
		}
	}
}
