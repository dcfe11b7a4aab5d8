package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
	"github.com/corepipe/corepipe/symbols"
)

// Uploaded is what the server did with an upload.
type Uploaded = wire.Uploaded

// Upload sends the debug file at path to the symbol store as the debug
// info of build ID id, streaming it.
func (c *Client) Upload(ctx context.Context, id, path string) (*Uploaded, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	u := c.base.String() + wire.SymbolsPath + "/" + id + "?" + url.Values{"name": {filepath.Base(path)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, f)
	if err != nil {
		return nil, err
	}
	req.ContentLength = st.Size()
	req.Header.Set("Content-Type", "application/octet-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", corepipe.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, responseError(resp)
	}
	var res Uploaded
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || res.Meta == nil {
		return nil, fmt.Errorf("upload %s: unreadable answer: %v", filepath.Base(path), err)
	}
	return &res, nil
}

// Symbols lists the debug files in the symbol store, at most limit of them
// (0: the server's maximum).
func (c *Client) Symbols(ctx context.Context, limit int) ([]*symbols.Meta, error) {
	path := wire.SymbolsPath
	if limit > 0 {
		path += fmt.Sprintf("?limit=%d", limit)
	}
	var list wire.SymbolList
	if err := c.getJSON(ctx, path, &list); err != nil {
		return nil, err
	}
	return list.Symbols, nil
}

// Symbol returns the metadata of the stored debug file of build ID id,
// corepipe.ErrNotFound when there is none.
func (c *Client) Symbol(ctx context.Context, id string) (*symbols.Meta, error) {
	var m symbols.Meta
	if err := c.getJSON(ctx, wire.SymbolsPath+"/"+id, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
