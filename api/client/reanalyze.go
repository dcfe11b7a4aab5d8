package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/corepipe/corepipe"
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
	body, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	const path = "/api/v1/reanalyze"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", corepipe.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp)
	}
	var out ReanalyzeResult
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("POST %s: decode response: %w", path, err)
	}
	return &out, nil
}
