package corepipe

import "time"

// GroupStatus is what a group shows: what its crashes made it (new,
// ongoing, regressed) unless triage says otherwise (resolved, ignored).
type GroupStatus string

// Group statuses.
const (
	GroupNew       GroupStatus = "new"
	GroupOngoing   GroupStatus = "ongoing"
	GroupRegressed GroupStatus = "regressed"
)

// QuietPeriod is how long a group must go unseen before a crash in a newer
// version counts as a regression rather than the same ongoing problem.
const QuietPeriod = 24 * time.Hour

// Group is every crash with the same signature: one bug.
type Group struct {
	Signature    string      `json:"signature"`
	Title        string      `json:"title"`
	Count        int64       `json:"count"`
	FirstSeen    time.Time   `json:"first_seen"`
	LastSeen     time.Time   `json:"last_seen"`
	FirstVersion string      `json:"first_version,omitempty"`
	LastVersion  string      `json:"last_version,omitempty"`
	Status       GroupStatus `json:"status"`
	Nodes        []string    `json:"nodes,omitempty"`
	Workloads    []string    `json:"workloads,omitempty"`
	// Assignee is the person or team that owns the bug, "" for nobody.
	Assignee string `json:"assignee,omitempty"`
	// Triage is what people decided and what crashes did since; nil for a
	// group nobody triaged. Status then reads through it (GroupStatus).
	Triage *Triage `json:"triage,omitempty"`
}

// GroupFilter selects groups from an index. Zero fields match everything.
type GroupFilter struct {
	Status GroupStatus
	// Assignee keeps the groups it owns.
	Assignee string
	// FirstVersion keeps the groups first seen in that version: a
	// release's new bugs.
	FirstVersion string
	// Since keeps the groups seen at or after it.
	Since  time.Time
	Limit  int
	Cursor string
}

// Share is how many crashes of one group have one value of an attribute (a
// version, a workload), and when the first and last of them happened.
type Share struct {
	Value     string    `json:"value"`
	Count     int64     `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// Observe folds one more crash into g and returns the group's new status. A
// group is new on its first crash; regressed when a crash comes from a build
// other than the last one seen after the group was quiet for QuietPeriod;
// ongoing otherwise. Crashes may arrive out of order (a replay, an agent
// that was offline): only a crash newer than LastSeen moves the group on.
func (g *Group) Observe(r *Report) GroupStatus {
	version := r.Version()
	t := r.CapturedAt
	if g.Count == 0 {
		*g = Group{Signature: r.Signature, Title: r.Title, Count: 1, FirstSeen: t, LastSeen: t,
			FirstVersion: version, LastVersion: version, Status: GroupNew}
		g.addPlace(r)
		return g.Status
	}
	g.Count++
	g.addPlace(r)
	if t.Before(g.FirstSeen) {
		g.FirstSeen, g.FirstVersion = t, version
	}
	if !t.After(g.LastSeen) {
		return g.Status
	}
	quiet := t.Sub(g.LastSeen) >= QuietPeriod
	switch {
	case quiet && version != "" && version != g.LastVersion:
		g.Status = GroupRegressed
	default:
		g.Status = GroupOngoing
	}
	g.LastSeen, g.LastVersion = t, version
	if r.Title != "" {
		g.Title = r.Title
	}
	return g.Status
}

// maxPlaces bounds the nodes and workloads a group remembers: a crash loop
// across a fleet must not grow one record without limit.
const maxPlaces = 50

func (g *Group) addPlace(r *Report) {
	g.Nodes = addBounded(g.Nodes, r.Node)
	g.Workloads = addBounded(g.Workloads, r.Workload())
}

func addBounded(list []string, v string) []string {
	if v == "" || len(list) >= maxPlaces {
		return list
	}
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}
