package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
)

// RequestCore asks the node that keeps crash id's core to upload it, and
// returns where the core is: stored already, or on its node, which was
// asked. A core that expired or was never kept is corepipe.ErrNotFound.
func (c *Client) RequestCore(ctx context.Context, id string) (corepipe.CoreLocation, error) {
	if err := corepipe.CheckID(id); err != nil {
		return corepipe.CoreLocation{}, err
	}
	path := "/api/v1/crashes/" + url.PathEscape(id) + "/core/request"
	var answer wire.CoreRequested
	if err := c.sendJSON(ctx, http.MethodPost, path, nil, &answer, http.StatusOK, http.StatusAccepted); err != nil {
		return corepipe.CoreLocation{}, err
	}
	return answer.Location, nil
}
