// Package wire is the JSON API's contract that the server (package api) and
// its Go client (api/client) both hold: the query of each list route and
// the bodies sent and answered. Each is written here once, so the two ends
// cannot disagree on a parameter's or a field's name, nor one end forget a
// filter the other reads.
package wire

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/symbols"
)

// MaxLimit is the longest page a list answers, the index's cap: asking for
// more is not an error, the page is just this long.
const MaxLimit = 500

// CrashStatuses are the statuses a crash list filters by.
var CrashStatuses = []corepipe.ReportStatus{corepipe.StatusAnalyzed, corepipe.StatusFailed, corepipe.StatusPending, corepipe.StatusDropped}

// GroupStatuses are the statuses a group list filters by.
var GroupStatuses = []corepipe.GroupStatus{corepipe.GroupNew, corepipe.GroupOngoing, corepipe.GroupRegressed, corepipe.GroupResolved, corepipe.GroupIgnored}

// crashParams are the query parameters of GET /api/v1/crashes (and of the
// UI's list) that are text fields of f.
func crashParams(f *corepipe.CrashFilter) map[string]*string {
	return map[string]*string{
		"node": &f.Node, "namespace": &f.Namespace, "pod": &f.Pod, "exe": &f.Exe,
		"signature": &f.Signature, "status": (*string)(&f.Status), "q": &f.Query, "cursor": &f.Cursor,
	}
}

// groupParams are those of GET /api/v1/groups.
func groupParams(f *corepipe.GroupFilter) map[string]*string {
	return map[string]*string{
		"status": (*string)(&f.Status), "assignee": &f.Assignee, "first_version": &f.FirstVersion, "cursor": &f.Cursor,
	}
}

// CrashQuery is the query that asks for the crashes f matches.
func CrashQuery(f corepipe.CrashFilter) url.Values {
	return query(crashParams(&f), f.Since, f.Limit)
}

// GroupQuery is the query that asks for the groups f matches.
func GroupQuery(f corepipe.GroupFilter) url.Values {
	return query(groupParams(&f), f.Since, f.Limit)
}

// ParseCrashQuery reads a crash list's query as of now. since is RFC 3339
// or a Go duration meaning "that long before now".
func ParseCrashQuery(q url.Values, now time.Time) (corepipe.CrashFilter, error) {
	var f corepipe.CrashFilter
	err := parse(q, now, crashParams(&f), func() error { return checkStatus(f.Status, CrashStatuses...) }, &f.Since, &f.Limit)
	return f, err
}

// ParseGroupQuery reads a group list's query as of now.
func ParseGroupQuery(q url.Values, now time.Time) (corepipe.GroupFilter, error) {
	var f corepipe.GroupFilter
	err := parse(q, now, groupParams(&f), func() error { return checkStatus(f.Status, GroupStatuses...) }, &f.Since, &f.Limit)
	return f, err
}

func query(params map[string]*string, since time.Time, limit int) url.Values {
	q := url.Values{}
	for k, v := range params {
		if *v != "" {
			q.Set(k, *v)
		}
	}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}

// parse sets params from q, checks what they set (the status), then reads
// the window every list shares: since and limit.
func parse(q url.Values, now time.Time, params map[string]*string, check func() error, since *time.Time, limit *int) error {
	for k, v := range params {
		*v = q.Get(k)
	}
	if err := check(); err != nil {
		return err
	}
	if v := q.Get("since"); v != "" {
		t, err := parseSince(v, now)
		if err != nil {
			return err
		}
		*since = t
	}
	n, err := Limit(q)
	*limit = n
	return err
}

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

// Limit reads a page size from q's limit, capped at MaxLimit; 0 when q
// leaves it to the server.
func Limit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: limit %q: want a positive integer", corepipe.ErrInvalid, corepipe.Clip(v, 64))
	}
	return min(n, MaxLimit), nil
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

// SymbolsPath is where debug files are uploaded (PUT SymbolsPath/BUILD-ID)
// and listed.
const SymbolsPath = "/api/v1/symbols"

// SymbolList answers GET SymbolsPath.
type SymbolList struct {
	Symbols []*symbols.Meta `json:"symbols"`
}

// CrashList answers GET /api/v1/crashes: a page of crash summaries, newest
// first, and the cursor of the next ("" after the last).
type CrashList struct {
	Crashes    []*corepipe.Report `json:"crashes"`
	NextCursor string             `json:"next_cursor"`
}

// GroupList answers GET /api/v1/groups.
type GroupList struct {
	Groups     []*corepipe.Group `json:"groups"`
	NextCursor string            `json:"next_cursor"`
}

// TriageRequest is the body of PATCH /api/v1/groups/{signature}; a field
// left out keeps what the group had. IgnoreUntil is an RFC 3339 time or a
// duration from now ("24h"), as since is in lists.
type TriageRequest struct {
	Status      corepipe.TriageStatus `json:"status,omitempty"`
	ResolvedIn  string                `json:"resolved_in,omitempty"`
	IgnoreUntil string                `json:"ignore_until,omitempty"`
	IgnoreCount int64                 `json:"ignore_count,omitempty"`
	// Assignee and IssueURL are pointers so that "" can clear them.
	Assignee *string `json:"assignee,omitempty"`
	IssueURL *string `json:"issue_url,omitempty"`
	Comment  string  `json:"comment,omitempty"`
}

// ReanalyzeRequest is the body of POST /api/v1/reanalyze: one crash by ID,
// or the crashes of a group (Signature) and/or of a build, a page of at
// most Limit.
type ReanalyzeRequest struct {
	ID        string `json:"id,omitempty"`
	Signature string `json:"signature,omitempty"`
	// BuildID is "gnu:HEX", "go:ID" or either without its prefix.
	BuildID string `json:"build_id,omitempty"`
	Limit   int    `json:"limit,omitempty"`
	Cursor  string `json:"cursor,omitempty"`
}

// ReanalyzeResult is what a re-analysis request did: the crashes queued
// (with the revision their new report will carry), those skipped and why,
// and the cursor of the matching crashes not looked at yet ("" when there
// are none).
type ReanalyzeResult struct {
	Matched    int            `json:"matched"`
	Queued     []QueuedCrash  `json:"queued"`
	Skipped    []SkippedCrash `json:"skipped"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// QueuedCrash is a crash queued for re-analysis.
type QueuedCrash struct {
	ID       string `json:"id"`
	Revision int    `json:"revision"`
}

// SkippedCrash is a matching crash that cannot be analysed again.
type SkippedCrash struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// CoreRequested answers POST /api/v1/crashes/{id}/core/request: where the
// core is, and whether its node was asked for it (a stored core needs no
// request).
type CoreRequested struct {
	Requested bool                  `json:"requested"`
	Location  corepipe.CoreLocation `json:"core_location"`
}

// Uploaded answers PUT /api/v1/symbols/{id}: the stored file's metadata,
// whether this upload stored it (false: the store had that build ID
// already, and uploading again is harmless), and what became of the kept
// crashes of the build, queued again when its debug file was first stored.
type Uploaded struct {
	Stored     bool             `json:"stored"`
	Meta       *symbols.Meta    `json:"meta"`
	Reanalysis *ReanalyzeResult `json:"reanalysis,omitempty"`
}
