-- Triage: what people decided about a group, which outlives a rebuild of
-- the index (the crashes and groups come back from the blob store; people's
-- decisions would not), and the history of every change.
CREATE TABLE triage (
	signature TEXT PRIMARY KEY,
	decision  BLOB NOT NULL -- JSON of corepipe.Triage as people left it
);
CREATE TABLE triage_history (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	signature TEXT NOT NULL,
	at        INTEGER NOT NULL, -- unix nanoseconds
	who       TEXT NOT NULL,
	role      TEXT NOT NULL,
	change    TEXT NOT NULL,
	comment   TEXT NOT NULL,
	crash_id  TEXT              -- the crash behind an automatic change
);
CREATE INDEX triage_history_by_group ON triage_history (signature, seq);
-- A rebuild folds the crashes again: a crash's change is recorded once.
CREATE UNIQUE INDEX triage_history_by_crash ON triage_history (signature, crash_id) WHERE crash_id IS NOT NULL;
-- A group's copy of its decision as its crashes since have left it (NULL:
-- never triaged), the status its crashes alone give it (status is the one
-- it shows), and its owner, which lists filter on.
ALTER TABLE groups ADD COLUMN triage BLOB;
ALTER TABLE groups ADD COLUMN observed TEXT NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN assignee TEXT NOT NULL DEFAULT '';
CREATE INDEX groups_by_assignee ON groups (assignee, last_seen, signature);
CREATE INDEX groups_by_status ON groups (status, last_seen, signature);
-- Full-text search over each crash's title, panic message and the
-- functions of its crashing goroutine; rowid is the crash row's.
-- tokenchars: Go identifiers keep their underscores.
CREATE VIRTUAL TABLE crashes_text USING fts5(text, tokenize = "unicode61 tokenchars '_'");
