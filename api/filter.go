package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
)

// maxLimit mirrors the index's cap; asking for more is not an error, the
// page is just this long.
const maxLimit = 500

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

// parseFilter reads the crash list query shared by the API and the UI. since is
// RFC 3339 or a Go duration meaning "that long before now".
func parseFilter(q url.Values, now time.Time) (corepipe.CrashFilter, error) {
	f := corepipe.CrashFilter{
		Node:      q.Get("node"),
		Namespace: q.Get("namespace"),
		Pod:       q.Get("pod"),
		Exe:       q.Get("exe"),
		Signature: q.Get("signature"),
		Status:    corepipe.ReportStatus(q.Get("status")),
		Query:     q.Get("q"),
		Cursor:    q.Get("cursor"),
	}
	var err error
	if err = checkStatus(f.Status, crashStatuses...); err == nil {
		f.Since, f.Limit, err = parseWindow(q, now)
	}
	return f, err
}

// crashStatuses are the statuses a crash list filters by.
var crashStatuses = []corepipe.ReportStatus{corepipe.StatusAnalyzed, corepipe.StatusFailed, corepipe.StatusPending, corepipe.StatusDropped}

// checkStatus accepts "" or one of the statuses a list can filter by.
func checkStatus[S ~string](status S, valid ...S) error {
	if status == "" || slices.Contains(valid, status) {
		return nil
	}
	names := make([]string, len(valid))
	for i, v := range valid {
		names[i] = string(v)
	}
	return fmt.Errorf("%w: status %q: want one of %s", corepipe.ErrInvalid, corepipe.Clip(string(status), 64), strings.Join(names, ", "))
}

// parseWindow reads the since and limit parameters every list shares.
func parseWindow(q url.Values, now time.Time) (since time.Time, limit int, err error) {
	if v := q.Get("since"); v != "" {
		if since, err = parseSince(v, now); err != nil {
			return since, 0, err
		}
	}
	limit, err = parseLimit(q)
	return since, limit, err
}

// parseLimit reads the page size; 0 when the query leaves it to the index.
func parseLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: limit %q: want a positive integer", corepipe.ErrInvalid, corepipe.Clip(v, 64))
	}
	return min(n, maxLimit), nil
}

func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%w: since %q: want an RFC 3339 time or a positive duration such as 24h", corepipe.ErrInvalid, corepipe.Clip(v, 64))
	}
	return now.Add(-d), nil
}
