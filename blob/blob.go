// Package blob opens the BlobStore a URL names, so that every command takes
// one --blob flag whatever the store behind it.
package blob

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/blob/s3"
)

// Open returns the store rawURL names: file:///abs/path for a directory,
// s3://bucket/prefix?endpoint=host:port&insecure=1&region=r for an
// S3-compatible store, with credentials from the standard AWS or MinIO
// environment variables.
func Open(ctx context.Context, rawURL string) (corepipe.BlobStore, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, which may hold a secret someone
		// pasted into it; say only what is wrong with it.
		if uerr, ok := err.(*url.Error); ok {
			err = uerr.Err
		}
		return nil, fmt.Errorf("%w blob URL: %w", corepipe.ErrInvalid, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("%w blob URL file://%s%s: want file:///absolute/path (three slashes)", corepipe.ErrInvalid, u.Host, u.Path)
		}
		if !filepath.IsAbs(u.Path) || u.RawQuery != "" {
			return nil, fmt.Errorf("%w blob URL %s: want file:///absolute/path", corepipe.ErrInvalid, u.Redacted())
		}
		st, err := fs.Open(u.Path)
		if err != nil {
			return nil, err
		}
		return st, nil
	case "s3":
		st, err := s3.Open(ctx, u)
		if err != nil {
			return nil, err
		}
		return st, nil
	case "":
		return nil, fmt.Errorf("%w blob URL %q: no scheme, want file:///path or s3://bucket/prefix", corepipe.ErrInvalid, u.Redacted())
	default:
		return nil, fmt.Errorf("%w blob URL scheme %q: want file:///path or s3://bucket/prefix", corepipe.ErrInvalid, u.Scheme)
	}
}
