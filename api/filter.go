package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// listOf answers a list request, of the API or the UI: the filter parse
// reads from its query as of now, and the page fetch finds for it (empty,
// never nil, when nothing matches) with the next page's cursor.
func listOf[F, T any](r *http.Request, parse func(url.Values, time.Time) (F, error), fetch func(context.Context, F) ([]T, string, error)) (f F, items []T, next string, err error) {
	if f, err = parse(r.URL.Query(), time.Now()); err != nil {
		return f, nil, "", err
	}
	if items, next, err = fetch(r.Context(), f); err != nil {
		return f, nil, "", err
	}
	if items == nil {
		items = []T{}
	}
	return f, items, next, nil
}
