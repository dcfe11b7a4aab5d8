// Package client talks to corepipe's HTTP API for command-line tools: it
// lists and reads reports and downloads cores and executables, streaming
// them to disk. `corepipe ls`, `show`, `fetch` and `debug` are built on it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
)

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client is an API client. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New returns a client of the server at base (http://host:port), sending
// token as a bearer token when it is not empty.
func New(base, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: server %q: want http://host:port or https://host:port", corepipe.ErrInvalid, base)
	}
	// No overall timeout: a core download can take an hour. Requests end
	// with their context.
	return &Client{base: u, token: token, http: &http.Client{}}, nil
}

// Crashes lists crash summaries matching f, newest first, and the cursor of
// the next page ("" after the last).
func (c *Client) Crashes(ctx context.Context, f corepipe.CrashFilter) ([]*corepipe.Report, string, error) {
	var out wire.CrashList
	if err := c.getJSON(ctx, "/api/v1/crashes?"+wire.CrashQuery(f).Encode(), &out); err != nil {
		return nil, "", err
	}
	return out.Crashes, out.NextCursor, nil
}

// Crash returns the full report of crash id.
func (c *Client) Crash(ctx context.Context, id string) (*corepipe.Report, error) {
	if err := corepipe.CheckID(id); err != nil {
		return nil, err
	}
	var r corepipe.Report
	if err := c.getJSON(ctx, "/api/v1/crashes/"+id, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Artifacts of a crash that can be downloaded.
const (
	Core       = "core"
	Executable = "executable"
)

// Fetched is where Fetch put a crash's files.
type Fetched struct {
	Core       string
	Executable string
}

// Fetch downloads the decompressed core and the executable of crash id into
// dir, creating it. Each file appears under its final name only once it is
// complete, so a file that is there can be trusted; with reuse, such files
// are not downloaded again.
func (c *Client) Fetch(ctx context.Context, id, dir string, reuse bool) (Fetched, error) {
	if err := corepipe.CheckID(id); err != nil {
		return Fetched{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Fetched{}, fmt.Errorf("fetch %s: %w", id, err)
	}
	var f Fetched
	var err error
	if f.Core, err = c.download(ctx, id, Core, dir, "core-"+id, reuse); err != nil {
		return Fetched{}, err
	}
	if f.Executable, err = c.download(ctx, id, Executable, dir, "", reuse); err != nil {
		return Fetched{}, err
	}
	return f, nil
}

// download streams one artifact into dir under name, or under the name the
// server suggests when name is "" (the executable's own). With reuse, an
// earlier complete download is kept; the executable's name is then found
// by its marker file.
func (c *Client) download(ctx context.Context, id, what, dir, name string, reuse bool) (string, error) {
	marker := filepath.Join(dir, "."+what+"-"+id)
	if reuse {
		if name == "" {
			if b, err := os.ReadFile(marker); err == nil {
				name = string(b)
			}
		}
		if name != "" {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return filepath.Join(dir, name), nil
			}
		}
	}
	resp, err := c.get(ctx, "/api/v1/crashes/"+id+"/"+what)
	if err != nil {
		return "", fmt.Errorf("download %s of %s: %w", what, id, err)
	}
	defer resp.Body.Close()
	if name == "" {
		name = attachmentName(resp.Header.Get("Content-Disposition"), what+"-"+id)
	}
	tmp, err := os.CreateTemp(dir, ".corepipe-download-*")
	if err != nil {
		return "", fmt.Errorf("download %s of %s: %w", what, id, err)
	}
	defer os.Remove(tmp.Name())
	// Cores and executables hold the crashed process's secrets.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("download %s of %s: %w", what, id, err)
	}
	_, err = io.Copy(tmp, resp.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("download %s of %s: %w (incomplete download discarded)", what, id, err)
	}
	path := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("download %s of %s: %w", what, id, err)
	}
	if err := os.WriteFile(marker, []byte(name), 0o600); err != nil {
		return "", fmt.Errorf("download %s of %s: %w", what, id, err)
	}
	return path, nil
}

// attachmentName is the file name a download suggests, reduced to one safe
// path element: the server is trusted with data, not with paths.
func attachmentName(disposition, fallback string) string {
	_, params, err := mime.ParseMediaType(disposition)
	if err != nil || params["filename"] == "" {
		return fallback
	}
	name := corepipe.SafeName(filepath.Base(params["filename"]))
	if name == "_" || strings.HasPrefix(name, ".") {
		return fallback
	}
	return name
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode response: %w", c.base.Path+path, err)
	}
	return nil
}

// sendJSON sends an authenticated method request with in as its JSON body
// (none when nil) and decodes the answer into out. An answer with a status
// other than want (200 when none is given) is the server's error,
// translated into the domain's sentinels.
func (c *Client) sendJSON(ctx context.Context, method, path string, in, out any, want ...int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", corepipe.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if len(want) == 0 {
		want = []int{http.StatusOK}
	}
	if !slices.Contains(want, resp.StatusCode) {
		return responseError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// get sends an authenticated GET and returns a 200 response, or the
// server's error translated into the domain's sentinels.
func (c *Client) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", corepipe.ErrUnavailable, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, responseError(resp)
}

func responseError(resp *http.Response) error {
	var body struct {
		Error string `json:"error"`
	}
	msg := resp.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&body); err == nil && body.Error != "" {
		msg = body.Error
	}
	sentinel, ok := map[int]error{
		http.StatusBadRequest:         corepipe.ErrInvalid,
		http.StatusUnauthorized:       corepipe.ErrUnauthorized,
		http.StatusForbidden:          corepipe.ErrForbidden,
		http.StatusNotFound:           corepipe.ErrNotFound,
		http.StatusServiceUnavailable: corepipe.ErrUnavailable,
	}[resp.StatusCode]
	if !ok {
		return fmt.Errorf("server answered %s: %s", resp.Status, msg)
	}
	// The server's message already starts with the sentinel's text.
	return &apiError{sentinel: sentinel, msg: msg}
}

type apiError struct {
	sentinel error
	msg      string
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.sentinel }
