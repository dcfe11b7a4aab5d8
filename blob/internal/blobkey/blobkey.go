// Package blobkey checks blob keys and list prefixes, so that every BlobStore
// adapter accepts exactly the same keys: a key that works on the filesystem
// store in development must work on S3 in production, and the reverse.
package blobkey

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/corepipe/corepipe"
)

// maxLen is S3's limit on object names; the filesystem store enforces it too
// so that nothing written in development is refused in production.
const maxLen = 1024

// Check returns an error wrapping corepipe.ErrInvalid unless key is a
// slash-separated relative path of non-empty elements, none of them "." or
// "..", with no backslash or NUL. Keys are built from untrusted text (node
// names, build IDs), so this is the last line against escaping the store's
// root.
func Check(key string) error {
	if key == "" {
		return invalid(key, "empty")
	}
	if err := checkChars(key); err != nil {
		return err
	}
	for elem := range strings.SplitSeq(key, "/") {
		if err := checkElem(key, elem); err != nil {
			return err
		}
	}
	return nil
}

// CheckPrefix is Check for a List prefix, which may be empty and may end in
// a partial element ("cores/2026/0") or a slash ("reports/").
func CheckPrefix(prefix string) error {
	if err := checkChars(prefix); err != nil {
		return err
	}
	i := strings.LastIndexByte(prefix, '/')
	if i < 0 {
		return nil
	}
	for elem := range strings.SplitSeq(prefix[:i], "/") {
		if err := checkElem(prefix, elem); err != nil {
			return err
		}
	}
	return nil
}

func checkChars(s string) error {
	switch {
	case len(s) > maxLen:
		return invalid(s, fmt.Sprintf("longer than %d bytes", maxLen))
	case !utf8.ValidString(s):
		return invalid(s, "not UTF-8")
	case strings.HasPrefix(s, "/"):
		return invalid(s, "absolute")
	case strings.ContainsRune(s, 0):
		return invalid(s, "contains NUL")
	case strings.ContainsRune(s, '\\'):
		return invalid(s, "contains a backslash")
	}
	return nil
}

func checkElem(s, elem string) error {
	switch elem {
	case "":
		return invalid(s, "empty path element")
	case ".", "..":
		return invalid(s, fmt.Sprintf("%q path element", elem))
	}
	return nil
}

func invalid(s, why string) error {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return fmt.Errorf("%w blob key %q: %s", corepipe.ErrInvalid, s, why)
}
