package corepipe

// LogKeyCrash is the key of the crash ID on every log line about a crash, in
// every part, so that one query follows a crash from the collector to
// Slack. Its value matches both the "crash_id=" and the "id=" searches
// operators already run.
const LogKeyCrash = "crash_id"
