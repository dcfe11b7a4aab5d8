package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
)

// Groups lists the groups matching f, most recently seen first, and the
// cursor of the next page ("" after the last).
func (c *Client) Groups(ctx context.Context, f corepipe.GroupFilter) ([]*corepipe.Group, string, error) {
	var out wire.GroupList
	if err := c.getJSON(ctx, "/api/v1/groups?"+wire.GroupQuery(f).Encode(), &out); err != nil {
		return nil, "", err
	}
	return out.Groups, out.NextCursor, nil
}

// TriageRequest is the body of PATCH /api/v1/groups/{signature}.
type TriageRequest = wire.TriageRequest

// Triage changes the group of signature (resolves, ignores, reopens,
// assigns it) and returns it as it now stands. It needs the triage role.
func (c *Client) Triage(ctx context.Context, signature string, t TriageRequest) (*corepipe.Group, error) {
	path := (&url.URL{Path: "/api/v1/groups/" + signature}).EscapedPath()
	var out struct {
		Group *corepipe.Group `json:"group"`
	}
	if err := c.sendJSON(ctx, http.MethodPatch, path, t, &out); err != nil {
		return nil, err
	}
	if out.Group == nil {
		return nil, fmt.Errorf("PATCH %s: the response has no group", path)
	}
	return out.Group, nil
}
