-- The notifier's memory. IF NOT EXISTS: state files written before the
-- migrations table existed already hold this schema, and must still open.
CREATE TABLE IF NOT EXISTS groups (
	signature TEXT PRIMARY KEY,
	pending   INTEGER NOT NULL,  -- crashes not yet summarised
	state     BLOB NOT NULL      -- JSON of the notifier's group state
);
CREATE INDEX IF NOT EXISTS groups_pending ON groups (pending) WHERE pending > 0;
CREATE TABLE IF NOT EXISTS handled (
	id          TEXT PRIMARY KEY,
	signed      INTEGER NOT NULL, -- handled with a signature (analysed)
	captured_at INTEGER NOT NULL  -- unix nanoseconds, for pruning
);
CREATE INDEX IF NOT EXISTS handled_captured_at ON handled (captured_at);
CREATE TABLE IF NOT EXISTS outbox (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	signature TEXT NOT NULL,     -- "" for digests
	message   BLOB NOT NULL      -- JSON of notify.Message
);
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
