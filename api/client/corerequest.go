package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/corepipe/corepipe"
)

// RequestCore asks the node that keeps crash id's core to upload it, and
// returns where the core is: stored already, or on its node, which was
// asked. A core that expired or was never kept is corepipe.ErrNotFound.
func (c *Client) RequestCore(ctx context.Context, id string) (corepipe.CoreLocation, error) {
	if err := corepipe.CheckID(id); err != nil {
		return corepipe.CoreLocation{}, err
	}
	path := "/api/v1/crashes/" + url.PathEscape(id) + "/core/request"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+path, nil)
	if err != nil {
		return corepipe.CoreLocation{}, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return corepipe.CoreLocation{}, fmt.Errorf("%w: %w", corepipe.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return corepipe.CoreLocation{}, responseError(resp)
	}
	var answer struct {
		Location corepipe.CoreLocation `json:"core_location"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return corepipe.CoreLocation{}, fmt.Errorf("POST %s: decode response: %w", path, err)
	}
	return answer.Location, nil
}
