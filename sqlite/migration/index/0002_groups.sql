-- Groups. A crash row's signature is the group it is counted in: Upsert
-- changes both in one transaction, so re-indexing a report never counts
-- it twice, and a report re-analysed under a new signature moves.
-- backfillGroups then folds the crashes already indexed into their groups.
ALTER TABLE crashes ADD COLUMN version TEXT NOT NULL DEFAULT '';  -- Report.Version()
ALTER TABLE crashes ADD COLUMN workload TEXT NOT NULL DEFAULT ''; -- Report.Workload()
CREATE TABLE groups (
	signature     TEXT PRIMARY KEY,
	title         TEXT NOT NULL,
	count         INTEGER NOT NULL,
	first_seen    INTEGER NOT NULL, -- unix nanoseconds
	last_seen     INTEGER NOT NULL,
	first_version TEXT NOT NULL,
	last_version  TEXT NOT NULL,
	status        TEXT NOT NULL,
	nodes         TEXT NOT NULL, -- JSON array, bounded by corepipe.Group
	workloads     TEXT NOT NULL  -- JSON array, bounded by corepipe.Group
);
CREATE INDEX groups_by_activity ON groups (last_seen, signature);
-- A group's page breaks its crashes down by build and by workload:
-- covering indexes answer that without reading the rows.
CREATE INDEX crashes_by_version ON crashes (signature, version, captured_at);
CREATE INDEX crashes_by_workload ON crashes (signature, workload, captured_at);
-- Every filter of the list has its keyset-ordered index: without one,
-- a filter that matches few crashes (one pod, a rare executable) scans
-- the whole table to fill a page.
CREATE INDEX crashes_by_namespace ON crashes (namespace, captured_at, id);
CREATE INDEX crashes_by_pod ON crashes (pod, captured_at, id);
CREATE INDEX crashes_by_exe ON crashes (exe, captured_at, id);
CREATE INDEX crashes_by_exe_base ON crashes (exe_base, captured_at, id);
CREATE INDEX crashes_by_status ON crashes (status, captured_at, id);
