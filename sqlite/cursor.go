package sqlite

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// Cursor versions prefix every cursor, so that a paging key can change later
// without misreading cursors that clients still hold, and so that a crash
// cursor is never taken for a group cursor.
const (
	crashCursor = "1"
	groupCursor = "g1"
)

// cursorKey is the sort key of the last row of a page: the next page starts
// strictly after it. at is a time in unix nanoseconds; key breaks ties (a
// crash ID, a group signature).
type cursorKey struct {
	at  int64
	key string
}

// encode makes the key opaque and URL-safe: clients pass it back verbatim
// and must not build their own.
func (k cursorKey) encode(version string) string {
	raw := version + "." + strconv.FormatInt(k.at, 10) + "." + k.key
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodeCursor reads a cursor of the given version whose key passes valid.
func decodeCursor(s, version string, valid func(string) bool) (cursorKey, error) {
	bad := func(why string) (cursorKey, error) {
		return cursorKey{}, fmt.Errorf("%w: cursor: %s", corepipe.ErrInvalid, why)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("not base64url")
	}
	v, rest, ok := strings.Cut(string(raw), ".")
	if !ok || v != version {
		return bad("unknown version")
	}
	nanos, key, ok := strings.Cut(rest, ".")
	if !ok {
		return bad("malformed")
	}
	at, err := strconv.ParseInt(nanos, 10, 64)
	if err != nil {
		return bad("malformed time")
	}
	if !valid(key) {
		return bad("malformed key")
	}
	return cursorKey{at: at, key: key}, nil
}
