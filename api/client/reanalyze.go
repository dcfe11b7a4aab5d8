package client

import (
	"context"
	"net/http"
)

// ReanalyzeRequest is the body of POST /api/v1/reanalyze: one crash by ID,
// or the crashes of a group and/or a build, a page of at most Limit.
type ReanalyzeRequest struct {
	ID        string `json:"id,omitempty"`
	Signature string `json:"signature,omitempty"`
	// BuildID is "gnu:HEX", "go:ID" or either without its prefix.
	BuildID string `json:"build_id,omitempty"`
	Limit   int    `json:"limit,omitempty"`
	Cursor  string `json:"cursor,omitempty"`
}

// ReanalyzeResult is what the server did with a re-analysis request.
type ReanalyzeResult struct {
	Matched int `json:"matched"`
	Queued  []struct {
		ID       string `json:"id"`
		Revision int    `json:"revision"`
	} `json:"queued"`
	Skipped []struct {
		ID     string `json:"id"`
		Reason string `json:"reason"`
	} `json:"skipped"`
	// NextCursor is where the matching crashes not looked at yet begin
	// ("" when there are none).
	NextCursor string `json:"next_cursor"`
}

// Reanalyze asks the server to have kept crashes analysed again, for
// instance once the symbols of their build were uploaded. It needs the
// triage role.
func (c *Client) Reanalyze(ctx context.Context, q ReanalyzeRequest) (*ReanalyzeResult, error) {
	var out ReanalyzeResult
	if err := c.sendJSON(ctx, http.MethodPost, "/api/v1/reanalyze", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
