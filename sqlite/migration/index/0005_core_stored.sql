-- Retention ranks each group's stored cores on every pass: a column says
-- whether a crash's core is stored, and a partial index holds only those
-- crashes, so a pass reads the cores kept, not every report.
ALTER TABLE crashes ADD COLUMN core_stored INTEGER NOT NULL DEFAULT 0;
UPDATE crashes SET core_stored = 1
	WHERE coalesce(json_extract(CAST(summary AS TEXT), '$.artifacts.core.key'), '') <> '';
CREATE INDEX crashes_by_stored_core ON crashes (signature, captured_at, id) WHERE core_stored = 1;
