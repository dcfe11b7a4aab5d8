package slack

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Every string that came from a crash is attacker-controllable: a panic
// message, a pod name, a function name. Slack parses &, < and > as control
// characters in every text object (<!channel>, <@U123>, <https://x|y>), so
// those are always escaped; crash text goes into plain_text objects, which
// Slack never formats, except stack frames, which go into a code block
// that nothing can close.

var entities = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// broadcasts are the bare mentions Slack may expand even without <…>; a
// zero-width space after the @ keeps the word readable and inert.
var broadcasts = regexp.MustCompile(`(?i)@(channel|here|everyone)\b`)

// escape makes untrusted text inert in any Slack text object.
func escape(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return broadcasts.ReplaceAllString(entities.Replace(s), "@\u200b$1")
}

// codeEscape makes untrusted text inert inside a ``` code block: a backtick
// becomes U+02CB, which looks the same and cannot close the block.
func codeEscape(s string) string {
	return strings.ReplaceAll(escape(s), "`", "\u02cb")
}

// fit cuts escaped text to at most max characters, never inside an entity,
// marking a cut with an ellipsis. Slack refuses a whole message when one
// text object is too long.
func fit(escaped string, max int) string {
	if utf8.RuneCountInString(escaped) <= max {
		return escaped
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(escaped); {
		piece := escaped[i : i+1]
		if escaped[i] == '&' {
			if end := strings.IndexByte(escaped[i:], ';'); end > 0 {
				piece = escaped[i : i+end+1]
			}
		} else {
			_, size := utf8.DecodeRuneInString(escaped[i:])
			piece = escaped[i : i+size]
		}
		// An entity counts as its own length: Slack's limits may count it
		// either way.
		w := utf8.RuneCountInString(piece)
		if n+w > max-1 {
			break
		}
		b.WriteString(piece)
		n += w
		i += len(piece)
	}
	b.WriteString("…")
	return b.String()
}
