package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/corepipe/corepipe"
)

// Groups lists the groups matching f, most recently seen first, and the
// cursor of the next page ("" after the last).
func (c *Client) Groups(ctx context.Context, f corepipe.GroupFilter) ([]*corepipe.Group, string, error) {
	q := listQuery(map[string]string{"status": string(f.Status), "assignee": f.Assignee, "cursor": f.Cursor}, f.Since, f.Limit)
	var out struct {
		Groups     []*corepipe.Group `json:"groups"`
		NextCursor string            `json:"next_cursor"`
	}
	if err := c.getJSON(ctx, "/api/v1/groups?"+q.Encode(), &out); err != nil {
		return nil, "", err
	}
	return out.Groups, out.NextCursor, nil
}

// TriageRequest is the body of PATCH /api/v1/groups/{signature}; empty
// fields keep what the group had. IgnoreUntil is an RFC 3339 time or a
// duration from now ("24h").
type TriageRequest struct {
	Status      corepipe.TriageStatus `json:"status,omitempty"`
	ResolvedIn  string                `json:"resolved_in,omitempty"`
	IgnoreUntil string                `json:"ignore_until,omitempty"`
	IgnoreCount int64                 `json:"ignore_count,omitempty"`
	Assignee    *string               `json:"assignee,omitempty"`
	Comment     string                `json:"comment,omitempty"`
}

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
