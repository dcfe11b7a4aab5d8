package api

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

const triageToken = "triage-token-0123456789"

// triageEnv is an env whose auth file also has a triage token named
// alice, and one crash.
func triageEnv(t *testing.T) (*env, *corepipe.Report) {
	t.Helper()
	tokens, err := ParseTokens(strings.NewReader(fmt.Sprintf("%s viewer\n%s triage alice\n%s debugger\n", viewerToken, triageToken, debuggerToken)))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(c *Config) { c.Tokens = tokens })
	r := newReport(time.Minute)
	e.add(r, true)
	return e, r
}

func bearerHeader(token string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return h
}

func (e *env) patch(sig string, h http.Header, body string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do("PATCH", "/api/v1/groups/"+sig, h, strings.NewReader(body))
}

func TestPatchGroupAuth(t *testing.T) {
	e, r := triageEnv(t)
	resolve := `{"status": "resolved", "resolved_in": "next", "comment": "fixed by #42"}`
	for _, tc := range []struct {
		token  string
		status int
	}{
		{"", http.StatusUnauthorized},
		{"not-a-token-0123456789", http.StatusUnauthorized},
		{viewerToken, http.StatusForbidden},
		{triageToken, http.StatusOK},
		{debuggerToken, http.StatusOK},
	} {
		resp, body := e.patch(r.Signature, bearerHeader(tc.token), resolve)
		if resp.StatusCode != tc.status {
			t.Errorf("token %q: %s %s, want %d", tc.token, resp.Status, body, tc.status)
		}
	}
	var d groupDetail
	_, body := e.patch(r.Signature, bearerHeader(triageToken), `{"status": "ignored", "ignore_until": "24h", "assignee": "team-payments"}`)
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if d.Group.Status != corepipe.GroupIgnored || d.Group.Assignee != "team-payments" || d.Group.Triage.IgnoreUntil.Before(time.Now().Add(23*time.Hour)) {
		t.Errorf("after ignoring: %+v %+v", d.Group, d.Group.Triage)
	}
	if len(d.History) != 3 {
		t.Fatalf("history %+v", d.History)
	}
	last, first := d.History[0], d.History[2]
	if last.Who != "alice" || last.Role != "triage" || !strings.HasPrefix(last.Change, "ignored until ") || !strings.HasSuffix(last.Change, ", assigned to team-payments") {
		t.Errorf("newest change %+v", last)
	}
	if first.Who != "alice" || first.Change != "resolved in the next release" || first.Comment != "fixed by #42" {
		t.Errorf("oldest change %+v", first)
	}
	// The debugger's token has no name in the auth file: a fingerprint,
	// never the token.
	if who := d.History[1].Who; !strings.HasPrefix(who, "token ") || strings.Contains(who, debuggerToken[:8]) {
		t.Errorf("an unnamed token is %q", who)
	}
	for _, tc := range []struct {
		sig, body string
		status    int
	}{
		{r.Signature, `{"status": "fixed"}`, http.StatusBadRequest},
		{r.Signature, `{"status": "resolved", "ignore_count": 3}`, http.StatusBadRequest},
		{r.Signature, `{"statu": "open"}`, http.StatusBadRequest},
		{r.Signature, `{"status": "ignored", "ignore_until": "soon"}`, http.StatusBadRequest},
		{r.Signature, `not json`, http.StatusBadRequest},
		{r.Signature, `{}`, http.StatusBadRequest},
		{"gocrash/v1:unknown", `{"status": "open"}`, http.StatusNotFound},
	} {
		resp, body := e.patch(tc.sig, bearerHeader(triageToken), tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s %s: %s %s, want %d", tc.sig, tc.body, resp.Status, body, tc.status)
		}
	}
	if g := e.groupStatus(r.Signature); g != corepipe.GroupIgnored {
		t.Errorf("bad requests changed the group: %s", g)
	}
}

func (e *env) groupStatus(sig string) corepipe.GroupStatus {
	e.t.Helper()
	g, err := e.index.Group(e.t.Context(), sig)
	if err != nil {
		e.t.Fatal(err)
	}
	return g.Status
}

// TestPatchGroupSessionNeedsCSRF: a browser's session cookie alone changes
// nothing, whatever a page on another site makes the browser send.
func TestPatchGroupSessionNeedsCSRF(t *testing.T) {
	e, r := triageEnv(t)
	session := e.signIn(triageToken)
	_, page := e.do("GET", "/groups/"+r.Signature, session, nil)
	csrf := csrfOf(page)
	h := session.Clone()
	h.Set("Content-Type", "application/json")
	if resp, body := e.patch(r.Signature, h, `{"status": "resolved"}`); resp.StatusCode != http.StatusForbidden {
		t.Errorf("PATCH with a session and no CSRF token: %s %s", resp.Status, body)
	}
	h.Set("X-CSRF-Token", csrf)
	if resp, body := e.patch(r.Signature, h, `{"status": "resolved"}`); resp.StatusCode != http.StatusOK {
		t.Errorf("PATCH with a session and its CSRF token: %s %s", resp.Status, body)
	}
}

func TestUITriageForm(t *testing.T) {
	e, r := triageEnv(t)
	path := "/groups/" + r.Signature
	viewer := e.signIn(viewerToken)
	if _, page := e.do("GET", path, viewer, nil); strings.Contains(string(page), `name="resolved_in"`) {
		t.Error("a viewer is offered the triage form")
	}
	viewerCookie := &http.Cookie{Name: sessionCookie, Value: strings.TrimPrefix(viewer.Get("Cookie"), sessionCookie+"=")}
	if resp, _ := e.post(path, []*http.Cookie{viewerCookie}, url.Values{"status": {"resolved"}, "csrf": {csrfOf(mustGet(e, path, viewer))}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer's form: %s", resp.Status)
	}

	session := e.signIn(triageToken)
	cookie := &http.Cookie{Name: sessionCookie, Value: strings.TrimPrefix(session.Get("Cookie"), sessionCookie+"=")}
	page := mustGet(e, path, session)
	if !strings.Contains(string(page), `name="resolved_in"`) {
		t.Fatalf("no triage form for the triage role: %.600s", page)
	}
	form := url.Values{"status": {"resolved"}, "resolved_in": {"version"}, "version": {"v2.0.0"}, "assignee": {"bob"}, "comment": {"fixed in <b>v2</b>"}}
	if resp, _ := e.post(path, []*http.Cookie{cookie}, form); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a form without its CSRF token: %s", resp.Status)
	}
	form.Set("csrf", csrfOf(page))
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"https://evil.example"}, "Cookie": {session.Get("Cookie")}}
	if resp, _ := e.do("POST", path, h, strings.NewReader(form.Encode())); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a form from another site: %s", resp.Status)
	}
	if s := e.groupStatus(r.Signature); s == corepipe.GroupResolved {
		t.Fatal("a refused form changed the group")
	}
	resp, _ := e.post(path, []*http.Cookie{cookie}, form)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != path {
		t.Fatalf("the form: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	page = mustGet(e, path, session)
	for _, want := range []string{`gstatus-resolved`, `in <span class="mono">v2.0.0</span>`, `>bob</a>`, "alice", "resolved in v2.0.0, assigned to bob", "fixed in &lt;b&gt;v2&lt;/b&gt;"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the group page lacks %q", want)
		}
	}
	if _, list := e.do("GET", "/groups?assignee=bob", session, nil); !strings.Contains(string(list), r.Signature) {
		t.Error("the groups of bob do not list it")
	}
	if _, list := e.do("GET", "/groups?assignee=carol", session, nil); strings.Contains(string(list), r.Signature) {
		t.Error("the groups of carol list it")
	}
}

func mustGet(e *env, path string, h http.Header) []byte {
	e.t.Helper()
	resp, body := e.do("GET", path, h, nil)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %s %.300s", path, resp.Status, body)
	}
	return body
}

// TestUITriageWithoutAuth: with auth off anyone on this machine may triage,
// but a page on another site still cannot make their browser do it.
func TestUITriageWithoutAuth(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	e.add(r, true)
	path := "/groups/" + r.Signature
	_, page := e.getOK(path)
	csrf := csrfOf(page)
	if csrf == "" {
		t.Fatal("no CSRF token in the form")
	}
	form := url.Values{"status": {"ignored"}, "ignore_count": {"10"}}
	if resp, _ := e.post(path, nil, form); resp.StatusCode != http.StatusForbidden {
		t.Errorf("without the CSRF token: %s", resp.Status)
	}
	form.Set("csrf", csrf)
	if resp, _ := e.post(path, nil, form); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("with it: %s", resp.Status)
	}
	if s := e.groupStatus(r.Signature); s != corepipe.GroupIgnored {
		t.Errorf("status %s", s)
	}
}

func TestSearchCrashes(t *testing.T) {
	e := newEnv(t)
	a := newReport(2 * time.Minute)
	b := newReport(time.Minute)
	b.Title, b.Panic = "concurrent map writes in main.store", &corepipe.Panic{Kind: corepipe.PanicKindFatal, Message: "concurrent map writes"}
	b.Goroutines[1].Frames = []corepipe.Frame{{Function: "main.(*cache).put"}}
	b.Signature = "gocrash/v1:bbbb"
	e.add(a, true)
	e.add(b, true)
	for q, want := range map[string][]string{
		"q=retries":             {a.ID},
		"q=nil+pointer":         {a.ID},
		"q=cache":               {b.ID},
		"q=main&node=node-a":    {b.ID, a.ID},
		"q=main&node=elsewhere": nil,
		"q=main&limit=1":        {b.ID},
	} {
		if got, _ := e.list(q); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", q, got, want)
		}
	}
	if _, body := e.getOK("/?q=cache"); !strings.Contains(string(body), b.ID) || strings.Contains(string(body), a.ID) || !strings.Contains(string(body), `name="q" value="cache"`) {
		t.Error("the UI's search box does not search")
	}
}

func TestCrashPageSourceLinks(t *testing.T) {
	links, err := corepipe.ParseSourceLinks([]string{"example.com/=https://git.example.com/{repo}/blob/{rev}/{path}#L{line}"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(c *Config) { c.SourceLinks = links })
	r := newReport(time.Minute)
	e.add(r, true)
	_, page := e.getOK("/crashes/" + r.ID)
	for _, want := range []string{
		`<a class="loc" rel="noreferrer" href="https://git.example.com/server/blob/abc123/server.go#L88">/src/server/server.go:88</a>`,
		`<a class="loc" rel="noreferrer" href="https://git.example.com/server/blob/abc123/server.go#L61">/src/server/server.go:61</a>`,
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the crash page lacks %s", want)
		}
	}
}

// TestUITriageBehindProxy: a user the proxy signed in triages from the
// page, and is who the history names; the proxy's word alone, without the
// form's CSRF token, changes nothing.
func TestUITriageBehindProxy(t *testing.T) {
	prefixes, err := ParseTrustedProxies("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	roles, err := ParseGroupRoles("oncall=triage,*=viewer")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t); c.TrustedProxies = prefixes; c.GroupRoles = roles })
	r := newReport(time.Minute)
	e.add(r, true)
	path := "/groups/" + r.Signature
	as := http.Header{"X-Forwarded-Email": {"dana@example.com"}, "X-Forwarded-Groups": {"oncall"}}
	page := mustGet(e, path, as)
	csrf := between(string(page), `name="csrf" value="`, `"`)
	if csrf == "" {
		t.Fatalf("no triage form for a triager behind the proxy: %.400s", page)
	}
	post := func(form url.Values) *http.Response {
		h := as.Clone()
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		h.Set("Origin", e.url)
		resp, _ := e.do("POST", path, h, strings.NewReader(form.Encode()))
		return resp
	}
	if resp := post(url.Values{"status": {"resolved"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("without the CSRF token: %s", resp.Status)
	}
	if resp := post(url.Values{"status": {"resolved"}, "csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("with it: %s", resp.Status)
	}
	h := as.Clone()
	h.Set("Content-Type", "application/json")
	if resp, _ := e.patch(r.Signature, h, `{"status": "open"}`); resp.StatusCode != http.StatusForbidden {
		t.Errorf("PATCH on the proxy's word alone: %s", resp.Status)
	}
	h.Set("X-CSRF-Token", csrf)
	if resp, body := e.patch(r.Signature, h, `{"status": "open"}`); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"who":"dana@example.com"`) {
		t.Errorf("PATCH with the token: %s %s", resp.Status, body)
	}
	viewer := http.Header{"X-Forwarded-Email": {"eve@example.com"}}
	if page := mustGet(e, path, viewer); strings.Contains(string(page), `name="resolved_in"`) {
		t.Error("a viewer behind the proxy is offered the form")
	}
}

func TestCrashPageFoldsLibraryFrames(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	r.Goroutines[1].Frames = append([]corepipe.Frame{
		{Function: "panic", File: "/usr/local/go/src/runtime/panic.go", Line: 115},
		{Function: "runtime.sigpanic", File: "/usr/local/go/src/runtime/signal_unix.go", Line: 925},
	}, append(r.Goroutines[1].Frames, corepipe.Frame{Function: "net/http.HandlerFunc.ServeHTTP", File: "/usr/local/go/src/net/http/server.go", Line: 2294})...)
	e.add(r, true)
	_, page := e.getOK("/crashes/" + r.ID)
	crashing := between(string(page), `class="goroutine crashing"`, `</section>`)
	for _, want := range []string{
		`<li class="folded"><details><summary>2 frames of the runtime and libraries</summary><ol class="frames"><li class="lib"><span class="fn">panic</span>`,
		`<li class="app"><span class="fn">main.(*server).retries</span>`,
		`<li class="lib"><span class="fn">net/http.HandlerFunc.ServeHTTP</span>`, // one frame alone is not folded
	} {
		if !strings.Contains(crashing, want) {
			t.Errorf("the crashing goroutine lacks %s:\n%s", want, crashing)
		}
	}
}

func TestIssueLinks(t *testing.T) {
	tokens, err := ParseTokens(strings.NewReader(triageToken + " triage alice\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(c *Config) {
		c.Tokens = tokens
		c.IssueTemplate = "https://github.com/acme/shop/issues/new?title={title}&body={body}&labels=crash"
	})
	r := newReport(time.Minute)
	e.add(r, true)
	session := e.signIn(triageToken)
	page := string(mustGet(e, "/groups/"+r.Signature, session))
	link := html.UnescapeString(between(page, `class="create-issue" rel="noreferrer" target="_blank" href="`, `"`))
	u, err := url.Parse(link)
	if err != nil || u.Host != "github.com" || u.Query().Get("title") != r.Title || u.Query().Get("labels") != "crash" {
		t.Fatalf("create-issue link %q: %v", link, err)
	}
	body := u.Query().Get("body")
	for _, want := range []string{r.Signature, "main.(*server).retries\n\t/src/server/server.go:88", e.url + "/groups/" + r.Signature} {
		if !strings.Contains(body, want) {
			t.Errorf("the issue's body lacks %q:\n%s", want, body)
		}
	}
	resp, b := e.patch(r.Signature, bearerHeader(triageToken), `{"issue_url": "https://github.com/acme/shop/issues/412"}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"issue_url":"https://github.com/acme/shop/issues/412"`) {
		t.Fatalf("linking the issue: %s %s", resp.Status, b)
	}
	if page := string(mustGet(e, "/groups/"+r.Signature, session)); !strings.Contains(page, `<a rel="noreferrer" href="https://github.com/acme/shop/issues/412">`) {
		t.Error("the group page does not link the issue")
	}
	for _, bad := range []string{`"javascript:alert(1)"`, `"/issues/1"`, `"ftp://x/1"`} {
		if resp, _ := e.patch(r.Signature, bearerHeader(triageToken), `{"issue_url": `+bad+`}`); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("issue_url %s: %s", bad, resp.Status)
		}
	}
	if _, err := New(Config{Index: e.index, Web: Web{IssueTemplate: "javascript:{title}"}}); err == nil {
		t.Error("a javascript: issue template accepted")
	}
}

func TestReleases(t *testing.T) {
	e := newEnv(t)
	crash := func(age time.Duration, sig, version string) *corepipe.Report {
		r := newReport(age)
		r.Signature, r.Go.MainVersion = sig, version
		e.add(r, true)
		return r
	}
	crash(3*time.Hour, "gocrash/v1:aaaa", "v1.0.0")
	crash(2*time.Hour, "gocrash/v1:aaaa", "v1.1.0")
	crash(time.Hour, "gocrash/v1:bbbb", "v1.1.0")
	crash(30*time.Minute, "gocrash/v1:bbbb", "v1.1.0")
	_, body := e.getOK("/api/v1/releases")
	var got releaseList
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, rel := range got.Releases {
		rows = append(rows, fmt.Sprintf("%s %d crashes %d groups %d new", rel.Version, rel.Crashes, rel.Groups, rel.NewGroups))
	}
	if want := "[v1.1.0 3 crashes 2 groups 1 new v1.0.0 1 crashes 1 groups 1 new]"; fmt.Sprint(rows) != want {
		t.Errorf("releases %v, want %s", rows, want)
	}
	if _, page := e.getOK("/releases"); !strings.Contains(string(page), `<a href="/groups?first_version=v1.1.0">1 new</a>`) {
		t.Error("the releases page does not link a release's new groups")
	}
	_, page := e.getOK("/groups?first_version=v1.1.0")
	if !strings.Contains(string(page), "gocrash/v1:bbbb") || strings.Contains(string(page), "gocrash/v1:aaaa") {
		t.Error("the groups first seen in v1.1.0 are not bbbb alone")
	}
}
