package client

import (
	"context"
	"net/http"

	"github.com/corepipe/corepipe/api/wire"
)

// ReanalyzeRequest is the body of POST /api/v1/reanalyze.
type ReanalyzeRequest = wire.ReanalyzeRequest

// ReanalyzeResult is what the server did with a re-analysis request.
type ReanalyzeResult = wire.ReanalyzeResult

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
