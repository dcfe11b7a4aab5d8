package wire

import (
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

// fill sets every field of the struct f points to but those named in skip
// to a value of its own, so that a field the query forgets shows.
func fill(t *testing.T, f any, skip ...string) {
	t.Helper()
	v := reflect.ValueOf(f).Elem()
	for i := range v.NumField() {
		field := v.Type().Field(i)
		if slices.Contains(skip, field.Name) {
			continue
		}
		switch x := v.Field(i); x.Kind() {
		case reflect.String:
			x.SetString(strings.ToLower(field.Name) + " value")
		case reflect.Int:
			x.SetInt(int64(10 + i))
		default:
			if x.Type() != reflect.TypeFor[time.Time]() {
				t.Fatalf("field %s of %T: the test does not know its kind", field.Name, f)
			}
			x.Set(reflect.ValueOf(time.Date(2026, 12, 3, 7, 0, 0, 123, time.UTC)))
		}
	}
}

// roundTrip checks that what the client asks for with f is what the
// server reads, field for field.
func roundTrip[F any](t *testing.T, f F, query func(F) url.Values, parse func(url.Values, time.Time) (F, error)) {
	t.Helper()
	got, err := parse(query(f), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f) {
		t.Errorf("read back %+v\nasked for %+v", got, f)
	}
}

// TestQueryRoundTrip: the group list's first_version was read by the
// server and never sent by the client, each end keeping its own list of
// parameters. BuildID is not a crash list parameter: re-analysis of a build
// (ReanalyzeRequest) is what filters by it.
func TestQueryRoundTrip(t *testing.T) {
	var crashes corepipe.CrashFilter
	fill(t, &crashes, "BuildID")
	crashes.Status = corepipe.StatusFailed
	roundTrip(t, crashes, CrashQuery, ParseCrashQuery)
	var groups corepipe.GroupFilter
	fill(t, &groups)
	groups.Status = corepipe.GroupRegressed
	roundTrip(t, groups, GroupQuery, ParseGroupQuery)
}

func TestParseQueryRefuses(t *testing.T) {
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	for query, want := range map[string]string{
		"status=lost":        `status "lost": want one of analyzed, failed, pending, dropped`,
		"since=yesterday":    `since "yesterday": want an RFC 3339 time or a positive duration`,
		"since=-1h":          `since "-1h"`,
		"limit=0":            `limit "0": want a positive integer`,
		"limit=ten":          `limit "ten"`,
		"status=x&since=bad": `status "x"`,
	} {
		q, _ := url.ParseQuery(query)
		_, err := ParseCrashQuery(q, now)
		if err == nil || !strings.Contains(err.Error(), want) || corepipe.ErrorCode(err) != corepipe.EINVALID {
			t.Errorf("%s: %v, want an invalid-input error saying %q", query, err, want)
		}
	}
	q := url.Values{"since": {"24h"}, "limit": {"100000"}}
	f, err := ParseCrashQuery(q, now)
	if err != nil || !f.Since.Equal(now.Add(-24*time.Hour)) || f.Limit != MaxLimit {
		t.Errorf("since 24h, limit 100000: %+v, %v: want a day before now and the cap", f, err)
	}
	if _, err := ParseGroupQuery(url.Values{"status": {"analyzed"}}, now); err == nil {
		t.Error("a crash status filters groups")
	}
}
