-- The crashes, one row each: the columns the API filters on and the
-- report summary as JSON.
CREATE TABLE crashes (
	id          TEXT PRIMARY KEY,
	captured_at INTEGER NOT NULL, -- unix nanoseconds
	node        TEXT NOT NULL,
	namespace   TEXT NOT NULL,
	pod         TEXT NOT NULL,
	exe         TEXT NOT NULL,
	exe_base    TEXT NOT NULL, -- base name of exe, so a filter needs no LIKE
	signature   TEXT NOT NULL,
	status      TEXT NOT NULL,
	summary     BLOB NOT NULL  -- JSON of Report.Summary()
);
-- The list is always newest first; the filtered lists the UI links to
-- most (one node, one bug) get their own keyset-ordered indexes.
CREATE INDEX crashes_by_time ON crashes (captured_at, id);
CREATE INDEX crashes_by_node ON crashes (node, captured_at, id);
CREATE INDEX crashes_by_signature ON crashes (signature, captured_at, id);
