package sqlite

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// cursorVersion prefixes every cursor so that the paging key can change
// later without misreading cursors that clients still hold.
const cursorVersion = "1"

// cursorKey is the sort key of the last row of a page: the next page starts
// strictly after it.
type cursorKey struct {
	capturedAt int64
	id         string
}

// encode makes the key opaque and URL-safe: clients pass it back verbatim
// and must not build their own.
func (k cursorKey) encode() string {
	raw := cursorVersion + "." + strconv.FormatInt(k.capturedAt, 10) + "." + k.id
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(s string) (cursorKey, error) {
	bad := func(why string) (cursorKey, error) {
		return cursorKey{}, fmt.Errorf("%w: cursor: %s", corepipe.ErrInvalid, why)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("not base64url")
	}
	version, rest, ok := strings.Cut(string(raw), ".")
	if !ok || version != cursorVersion {
		return bad("unknown version")
	}
	nanos, id, ok := strings.Cut(rest, ".")
	if !ok {
		return bad("malformed")
	}
	capturedAt, err := strconv.ParseInt(nanos, 10, 64)
	if err != nil {
		return bad("malformed time")
	}
	if !corepipe.ValidID(id) {
		return bad("malformed id")
	}
	return cursorKey{capturedAt: capturedAt, id: id}, nil
}
