package corepipe

import (
	"crypto/rand"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// NewID returns a new crash ID: a ULID, sortable by time and URL-safe.
func NewID(t time.Time) string {
	return ulid.MustNew(ulid.Timestamp(t), rand.Reader).String()
}

var idPattern = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)

// ValidID reports whether id is a well-formed crash ID. Every ID that comes
// from outside is checked before it becomes part of a blob key.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// CheckID returns an ErrInvalid error when id is not a crash ID.
func CheckID(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: crash id %q", ErrInvalid, Clip(id, 40))
	}
	return nil
}

// crashPrefix is cores/<yyyy>/<mm>/<dd>/<node>/<id>/.
func crashPrefix(c *Crash) string {
	t := c.CapturedAt.UTC()
	return path.Join("cores", t.Format("2006"), t.Format("01"), t.Format("02"), SafeName(c.Node), c.ID) + "/"
}

// CoreKey is where the compressed core of c is stored.
func CoreKey(c *Crash) string { return crashPrefix(c) + "core.zst" }

// ManifestKey is where the manifest of c is stored.
func ManifestKey(c *Crash) string { return crashPrefix(c) + "manifest.json" }

// NodeReportKey is where the report made on the node of c is stored,
// while its core stays on the node.
func NodeReportKey(c *Crash) string { return crashPrefix(c) + "node-report.json" }

// LogKey is where the log excerpt of c is stored.
func LogKey(c *Crash) string { return crashPrefix(c) + "log.txt" }

// ConsoleKey is where the console log of c, a kernel panic, is stored.
func ConsoleKey(c *Crash) string { return crashPrefix(c) + "console.txt" }

// ExecutableKey is where an executable is stored, by its build ID or sha256.
func ExecutableKey(contentID string) string { return "executables/" + SafeName(contentID) }

// ReportKey is where the report of crash id is stored.
func ReportKey(id string) string { return "reports/" + id + ".json" }

// ReportsPrefix is the prefix of every stored report.
const ReportsPrefix = "reports/"

// SafeName turns untrusted text (a hostname, a build ID) into one path
// element: no separators, no dot-dot, nothing outside [A-Za-z0-9._-].
func SafeName(s string) string {
	var b strings.Builder
	for _, r := range s[:min(len(s), 128)] { // 128 bytes, as stored keys always were
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := strings.Trim(b.String(), ".")
	if out == "" {
		return "_"
	}
	return out
}

// DebugInfoPrefix is the prefix of the symbol store: debug files and their
// metadata.
const DebugInfoPrefix = "debuginfo/"

// DebugInfoKey is where the debug file of GNU build ID id is stored.
func DebugInfoKey(id string) string { return DebugInfoPrefix + SafeName(id) }

// DebugInfoGoKey is where the debug file of a program with only a Go build
// ID (before Go 1.24, or linked with -B none) is stored, and where the
// metadata of every debug file with that Go build ID points.
func DebugInfoGoKey(id string) string { return DebugInfoPrefix + "go/" + SafeName(id) }

// DebugInfoMetaKey is where the metadata (JSON) of the debug file stored
// at key, or pointing at it, is stored.
func DebugInfoMetaKey(key string) string { return key + ".json" }
