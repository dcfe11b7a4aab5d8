-- The executable's GNU and Go build IDs, so that every kept crash of a
-- build can be found (and analysed again) once its symbols are uploaded.
ALTER TABLE crashes ADD COLUMN build_id TEXT NOT NULL DEFAULT '';
ALTER TABLE crashes ADD COLUMN go_build_id TEXT NOT NULL DEFAULT '';
UPDATE crashes SET
	build_id = coalesce(json_extract(CAST(summary AS TEXT), '$.artifacts.executable.build_id'), ''),
	go_build_id = coalesce(json_extract(CAST(summary AS TEXT), '$.artifacts.executable.go_build_id'), '');
CREATE INDEX crashes_by_build_id ON crashes (build_id, captured_at, id);
CREATE INDEX crashes_by_go_build_id ON crashes (go_build_id, captured_at, id);
