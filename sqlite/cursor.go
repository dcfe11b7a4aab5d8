package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

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

// keyset is how a list pages: newest first by the time column at, ties
// broken by the column key, with cursors of version whose keys pass valid.
type keyset struct {
	at, key, version string
	valid            func(string) bool
}

var (
	crashPages = keyset{at: "captured_at", key: "id", version: crashCursor, valid: corepipe.ValidID}
	groupPages = keyset{at: "last_seen", key: "signature", version: groupCursor, valid: func(s string) bool { return checkSignature(s) == nil }}
)

// page queries one page of sel: the rows that meet where (with args), at
// or after since unless it is zero, and after cursor unless it is empty,
// as many as the limit n asks for (see pageLimit), which it returns. It
// asks for one row past the limit: that row tells whether there is a next
// page without a second query.
func (x *Index) page(ctx context.Context, p keyset, sel string, where []string, args []any, since time.Time, cursor string, n int) (*sql.Rows, int, error) {
	limit, err := pageLimit(n)
	if err != nil {
		return nil, 0, err
	}
	if !since.IsZero() {
		where = append(where, p.at+" >= ?")
		args = append(args, unixNanos(since))
	}
	if cursor != "" {
		k, err := decodeCursor(cursor, p.version, p.valid)
		if err != nil {
			return nil, 0, err
		}
		where = append(where, "("+p.at+", "+p.key+") < (?, ?)")
		args = append(args, k.at, k.key)
	}
	if len(where) > 0 {
		sel += " WHERE " + strings.Join(where, " AND ")
	}
	sel += " ORDER BY " + p.at + " DESC, " + p.key + " DESC LIMIT ?"
	rows, err := x.db.QueryContext(ctx, sel, append(args, limit+1)...)
	if err != nil {
		return nil, 0, FormatError(err)
	}
	return rows, limit, nil
}
