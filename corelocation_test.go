package corepipe

import (
	"testing"
	"time"
)

// A report says where its core is at any time: a core kept on a node past
// its time reads as expired, without anyone having said so.
func TestCoreWhere(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	onNode := &CoreLocation{State: CoreOnNode, Node: "n1", Until: now.Add(time.Hour), Reason: "over the quota"}
	for _, tc := range []struct {
		core CoreArtifact
		at   time.Time
		want string
	}{
		{CoreArtifact{Key: "cores/x/core.zst"}, now, "stored"},
		{CoreArtifact{Location: onNode}, now, "on node n1 until 2026-12-01T13:00:00Z (over the quota)"},
		{CoreArtifact{Location: onNode}, now.Add(2 * time.Hour), "expired: kept on node n1 until 2026-12-01T13:00:00Z (over the quota)"},
		{CoreArtifact{Dropped: "rate_limited"}, now, "never kept: the collector dropped it: rate_limited"},
		{CoreArtifact{}, now, "never kept: no core was dumped"},
	} {
		if got := tc.core.Where(tc.at).String(); got != tc.want {
			t.Errorf("%+v at %v: %q, want %q", tc.core, tc.at, got, tc.want)
		}
	}
	if onNode.State != CoreOnNode {
		t.Error("Where changed the stored location")
	}
}
