package corepipe

import (
	"fmt"
	"time"
)

// Where a crash's core is (CoreLocation.State). The fleet's core policy
// ships only some cores (issue 16): the others stay in their node's spool
// for a while, where a debugger can ask for them.
const (
	// CoreStored: the core is in the blob store.
	CoreStored = "stored"
	// CoreOnNode: the core is in the spool of Node until Until, and can
	// be requested (POST /api/v1/crashes/{id}/core/request).
	CoreOnNode = "on_node"
	// CoreExpired: the core was kept on its node and is gone.
	CoreExpired = "expired"
	// CoreNotKept: no core was ever kept; Reason says why.
	CoreNotKept = "not_kept"
)

// CoreLocation says where a crash's core is. In JSON, the report's
// artifacts.core.location: {"state", "node", "until", "reason"}.
type CoreLocation struct {
	State string `json:"state"`
	// Node is the node whose spool keeps (or kept) the core.
	Node string `json:"node,omitempty"`
	// Until is when the node deletes the core it keeps.
	Until time.Time `json:"until,omitzero"`
	// Reason says why the core is not stored: the policy that kept it on
	// its node, why it went early, or why the collector kept none.
	Reason string `json:"reason,omitempty"`
}

// Where is where the core is at now. A core kept on its node past its
// time reads as expired, so a report always says where the core is, even
// when nothing told the pipeline that the node let it go.
func (c CoreArtifact) Where(now time.Time) CoreLocation {
	switch {
	case c.Key != "":
		return CoreLocation{State: CoreStored}
	case c.Location != nil:
		l := *c.Location
		if l.State == CoreOnNode && !l.Until.IsZero() && now.After(l.Until) {
			l.State = CoreExpired
		}
		return l
	case c.Dropped != "":
		return CoreLocation{State: CoreNotKept, Reason: "the collector dropped it: " + c.Dropped}
	}
	return CoreLocation{State: CoreNotKept, Reason: "no core was dumped"}
}

// String says the location in words, for the UI and the CLI.
func (l CoreLocation) String() string {
	until := l.Until.UTC().Format(time.RFC3339)
	switch l.State {
	case CoreStored:
		return "stored"
	case CoreOnNode:
		return fmt.Sprintf("on node %s until %s (%s)", l.Node, until, l.Reason)
	case CoreExpired:
		if l.Node == "" {
			// Retention deleted it from the blob store at Until.
			return fmt.Sprintf("expired at %s (%s)", until, l.Reason)
		}
		if l.Until.IsZero() {
			return fmt.Sprintf("expired on node %s (%s)", l.Node, l.Reason)
		}
		return fmt.Sprintf("expired: kept on node %s until %s (%s)", l.Node, until, l.Reason)
	}
	if l.Reason == "" {
		return "never kept"
	}
	return "never kept: " + l.Reason
}
