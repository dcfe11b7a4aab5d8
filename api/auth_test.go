package api

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

const (
	viewerToken   = "viewer-token-0123456789"
	debuggerToken = "debugger-token-0123456789"
	adminToken    = "admin-token-0123456789abc"
)

func testTokens(t *testing.T) *Tokens {
	t.Helper()
	tokens, err := ParseTokens(strings.NewReader(fmt.Sprintf(`# corepipe auth file
%s viewer

%s   debugger
%s admin
%s triage
`, viewerToken, debuggerToken, adminToken, triageToken)))
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

func TestParseTokens(t *testing.T) {
	tokens := testTokens(t)
	for token, want := range map[string]Role{
		viewerToken: RoleViewer, debuggerToken: RoleDebugger, adminToken: RoleAdmin,
		"": RoleNone, "viewer-token-012345678": RoleNone, viewerToken + "x": RoleNone, "viewer": RoleNone,
	} {
		if got := tokens.role(token); got != want {
			t.Errorf("role(%q) = %s, want %s", token, got, want)
		}
	}
	for name, file := range map[string]string{
		"short token":     "short viewer",
		"unknown role":    "0123456789abcdefgh root",
		"no role":         "0123456789abcdefgh",
		"four fields":     "0123456789abcdefgh viewer alice extra",
		"listed twice":    "0123456789abcdefgh viewer\n0123456789abcdefgh admin",
		"no tokens":       "# nothing\n\n",
		"role none":       "0123456789abcdefgh none",
		"upper-case role": "0123456789abcdefgh Viewer",
	} {
		if _, err := ParseTokens(strings.NewReader(file)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestListenLoopbackOnlyWithoutAuth(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "example.com:0", "10.1.2.3:0"} {
		if ln, err := Listen(addr, nil); err == nil {
			ln.Close()
			t.Errorf("%s: listening without auth", addr)
		} else if !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: error %q does not say why", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		ln, err := Listen(addr, nil)
		if err != nil {
			t.Errorf("%s: %v", addr, err)
			continue
		}
		ln.Close()
	}
	ln, err := Listen("0.0.0.0:0", testTokens(t))
	if err != nil {
		t.Fatalf("with tokens, all interfaces: %v", err)
	}
	ln.Close()
	if _, err := Listen("no-port", nil); err == nil {
		t.Error("an address without a port was accepted")
	}
}

// authEnv is an env with tokens and one crash whose core and executable are
// stored, so that every route can answer 200.
func authEnv(t *testing.T) (*env, *corepipe.Report) {
	t.Helper()
	q := embeddedQueue(t)
	e := newEnvWith(t, func(c *Config) { c.Tokens, c.Republisher = testTokens(t), q })
	r := storedCrash(e, time.Minute)
	return e, r
}

// storedCrash indexes a crash with its report, core and executable stored.
func storedCrash(e *env, age time.Duration) *corepipe.Report {
	e.t.Helper()
	r := newReport(age)
	r.Artifacts.Core = corepipe.CoreArtifact{Key: corepipe.CoreKey(&corepipe.Crash{ID: r.ID, CapturedAt: r.CapturedAt, Node: r.Node})}
	e.put(r.Artifacts.Core.Key, zstdBytes(e.t, []byte("\x7fELF core")))
	r.Artifacts.Executable = corepipe.ExeArtifact{Path: "/usr/local/bin/server", Found: true, Key: corepipe.ExecutableKey("feed")}
	e.put(r.Artifacts.Executable.Key, []byte("\x7fELF exe"))
	e.add(r, true)
	return r
}

func (e *env) do(method, path string, header http.Header, body io.Reader) (*http.Response, []byte) {
	e.t.Helper()
	return e.roundTrip(e.request(method, path, header, body))
}

// request is a request of path on e's server, with header.
func (e *env) request(method, path string, header http.Header, body io.Reader) *http.Request {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return req
}

// roundTrip sends req, not following redirects, and reads the whole answer.
func (e *env) roundTrip(req *http.Request) (*http.Response, []byte) {
	e.t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// TestAuthMatrix asks every route with every kind of credential.
func TestAuthMatrix(t *testing.T) {
	e, r := authEnv(t)
	kp := storedKernelPanic(e)
	routes := []struct {
		path string
		need Role
		ui   bool
	}{
		{"/healthz", RoleNone, false},
		{"/readyz", RoleNone, false},
		{"/static/style.css", RoleNone, false},
		{"/login", RoleNone, true},
		{"/api/v1/crashes", RoleViewer, false},
		{"/api/v1/crashes/" + r.ID, RoleViewer, false},
		{"/api/v1/crashes/" + r.ID + "/goroutines", RoleViewer, false},
		{"/api/v1/groups", RoleViewer, false},
		{"/api/v1/groups/" + r.Signature, RoleViewer, false},
		{"/api/v1/crashes/" + r.ID + "/core", RoleDebugger, false},
		{"/api/v1/crashes/" + r.ID + "/executable", RoleDebugger, false},
		{"/api/v1/crashes/" + kp.ID + "/console", RoleDebugger, false},
		// POSTed. The core is stored: a request has nothing to ask, and
		// says so.
		{"/api/v1/crashes/" + r.ID + "/core/request", RoleDebugger, false},
		// POSTed with this crash's ID, which has no manifest: it is
		// skipped, and the answer says so.
		{"/api/v1/reanalyze", RoleTriage, false},
		{"/", RoleViewer, true},
		{"/crashes/" + r.ID, RoleViewer, true},
		{"/groups", RoleViewer, true},
		{"/groups/" + r.Signature, RoleViewer, true},
	}
	creds := []struct {
		name   string
		header http.Header
		role   Role
		bad    bool // presented something, and it is wrong
	}{
		{"no token", nil, RoleNone, false},
		{"bad token", http.Header{"Authorization": {"Bearer not-a-token-at-all-xx"}}, RoleNone, true},
		{"basic auth", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, RoleNone, true},
		{"empty bearer", http.Header{"Authorization": {"Bearer "}}, RoleNone, true},
		{"bad cookie", http.Header{"Cookie": {sessionCookie + "=nope"}}, RoleNone, true},
		// The old cookie held the token itself; it means nothing now.
		{"token as cookie", http.Header{"Cookie": {"corepipe_token=" + viewerToken}}, RoleNone, false},
		{"token as session", http.Header{"Cookie": {sessionCookie + "=" + viewerToken}}, RoleNone, true},
		{"viewer", http.Header{"Authorization": {"Bearer " + viewerToken}}, RoleViewer, false},
		{"viewer session", e.signIn(viewerToken), RoleViewer, false},
		{"triage", http.Header{"Authorization": {"Bearer " + triageToken}}, RoleTriage, false},
		{"debugger", http.Header{"Authorization": {"bearer " + debuggerToken}}, RoleDebugger, false},
		{"debugger session", e.signIn(debuggerToken), RoleDebugger, false},
		{"admin", http.Header{"Authorization": {"Bearer " + adminToken}}, RoleAdmin, false},
	}
	for _, rt := range routes {
		for _, c := range creds {
			t.Run(rt.path+"/"+c.name, func(t *testing.T) {
				method := "GET"
				if strings.HasSuffix(rt.path, "/core/request") {
					method = "POST"
				}
				var reqBody io.Reader
				if rt.path == "/api/v1/reanalyze" {
					method, reqBody = "POST", strings.NewReader(`{"id": "`+r.ID+`"}`)
				}
				header := c.header
				if method != "GET" && strings.HasSuffix(c.name, "session") {
					// A browser's session posts with its form's token.
					header = e.withCSRF(header)
				}
				resp, body := e.do(method, rt.path, header, reqBody)
				want := http.StatusOK
				switch {
				case rt.need == RoleNone:
				case c.role == RoleNone:
					want = http.StatusUnauthorized
				case c.role < rt.need:
					want = http.StatusForbidden
				}
				if resp.StatusCode != want {
					t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, want, body)
				}
				if want == http.StatusOK {
					return
				}
				if rt.ui && want == http.StatusUnauthorized {
					if !strings.Contains(string(body), `action="/login"`) {
						t.Errorf("UI 401 without the login form: %.300s", body)
					}
					if c.bad && !strings.Contains(string(body), "invalid token") && !strings.Contains(string(body), "Bearer") && !strings.Contains(string(body), "session") {
						t.Errorf("UI 401 does not say what is wrong with the token: %.300s", body)
					}
					return
				}
				wantError(t, resp, body, want, map[int]string{http.StatusUnauthorized: "token", http.StatusForbidden: rt.need.String()}[want])
				if want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			})
		}
	}
}

func TestNoAuthAllowsEverything(t *testing.T) {
	e := newEnv(t)
	r := storedCrash(e, time.Minute)
	for _, path := range []string{"/api/v1/crashes/" + r.ID + "/core", "/crashes/" + r.ID, "/groups/" + r.Signature} {
		e.getOK(path)
	}
	// There is nothing to sign in to.
	if resp, _ := e.do("GET", "/login", nil, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("GET /login without auth: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
}

// loginForm is what a browser has after GET /login: the login cookie and
// the form's CSRF token.
type loginForm struct {
	cookie *http.Cookie
	csrf   string
}

func (e *env) loginForm() loginForm {
	e.t.Helper()
	resp, body := e.do("GET", "/login", nil, nil)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /login: %s", resp.Status)
	}
	var f loginForm
	for _, c := range resp.Cookies() {
		if c.Name == loginCookie {
			f.cookie = c
		}
	}
	f.csrf = between(string(body), `name="csrf" value="`, `"`)
	if f.cookie == nil || f.csrf == "" {
		e.t.Fatalf("GET /login gave no login cookie or CSRF token: %v %.400s", resp.Cookies(), body)
	}
	return f
}

// post sends a form as a browser on this site does: its cookie, its CSRF
// token, and the Origin of the page.
func (e *env) post(path string, cookies []*http.Cookie, values url.Values) (*http.Response, []byte) {
	e.t.Helper()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {e.url}}
	for _, c := range cookies {
		h.Add("Cookie", c.Name+"="+c.Value)
	}
	return e.do("POST", path, h, strings.NewReader(values.Encode()))
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// signIn signs in through the form and returns the header that presents
// the session.
func (e *env) signIn(token string) http.Header {
	e.t.Helper()
	f := e.loginForm()
	resp, body := e.post("/login", []*http.Cookie{f.cookie}, url.Values{"token": {token}, "next": {"/"}, "csrf": {f.csrf}})
	c := cookieNamed(resp, sessionCookie)
	if resp.StatusCode != http.StatusSeeOther || c == nil {
		e.t.Fatalf("sign in: %s %v %.300s", resp.Status, resp.Cookies(), body)
	}
	return http.Header{"Cookie": {c.Name + "=" + c.Value}}
}

// csrfOf is the sign-out form's CSRF token on a page.
func csrfOf(body []byte) string {
	return between(string(body), `name="csrf" value="`, `"`)
}

func TestLoginFlow(t *testing.T) {
	e, r := authEnv(t)
	resp, body := e.do("GET", "/crashes/"+r.ID, nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `value="/crashes/`+r.ID+`"`) {
		t.Fatalf("signed-out crash page: %s, next not kept: %.400s", resp.Status, body)
	}

	f := e.loginForm()
	form := func(token, next string) url.Values {
		return url.Values{"token": {token}, "next": {next}, "csrf": {f.csrf}}
	}
	resp, body = e.post("/login", []*http.Cookie{f.cookie}, form("wrong-token-wrong-token", "/crashes/"+r.ID))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "invalid token") {
		t.Errorf("wrong token: %s %.200s", resp.Status, body)
	}
	if cookieNamed(resp, sessionCookie) != nil {
		t.Error("a wrong token set a session cookie")
	}

	resp, _ = e.post("/login", []*http.Cookie{f.cookie}, form(viewerToken, "/crashes/"+r.ID))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/crashes/"+r.ID {
		t.Fatalf("login: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	cookie := cookieNamed(resp, sessionCookie)
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.MaxAge <= 0 || cookie.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/, an expiry, not Secure on http", cookie)
	}
	if strings.Contains(cookie.Value, viewerToken) || len(cookie.Value) < 20 {
		t.Fatalf("session cookie %q: want a random ID, not the token", cookie.Value)
	}
	withCookie := http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}}
	resp, body = e.do("GET", "/crashes/"+r.ID, withCookie, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Sign out") {
		t.Errorf("signed-in crash page: %s", resp.Status)
	}
	csrf := csrfOf(body)
	// The page links the core, but a viewer may not download it.
	if resp, _ := e.do("GET", "/api/v1/crashes/"+r.ID+"/core", withCookie, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer downloading a core: %s", resp.Status)
	}

	// Sign-out without the page's token, or from another site, is refused
	// and leaves the session alone.
	if resp, _ := e.post("/logout", []*http.Cookie{cookie}, url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without CSRF token: %s", resp.Status)
	}
	if resp, _ := e.post("/logout", []*http.Cookie{cookie}, url.Values{"csrf": {"forged"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout with a wrong CSRF token: %s", resp.Status)
	}
	foreign := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"https://evil.example"}, "Cookie": withCookie["Cookie"]}
	if resp, _ := e.do("POST", "/logout", foreign, strings.NewReader(url.Values{"csrf": {csrf}}.Encode())); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout from another origin: %s", resp.Status)
	}
	if resp, _ := e.do("GET", "/crashes/"+r.ID, withCookie, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("a refused logout ended the session: %s", resp.Status)
	}

	resp, _ = e.post("/logout", []*http.Cookie{cookie}, url.Values{"csrf": {csrf}})
	if c := cookieNamed(resp, sessionCookie); resp.StatusCode != http.StatusSeeOther || c == nil || c.MaxAge >= 0 {
		t.Errorf("logout: %s, cookies %v", resp.Status, resp.Cookies())
	}
	// The server forgot the session: the same cookie, kept by someone who
	// copied it, no longer works.
	if resp, _ := e.do("GET", "/api/v1/crashes", withCookie, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("session after logout: %s, want 401", resp.Status)
	}
}

// TestLoginCSRF: the sign-in form is protected too (login CSRF signs a
// victim into the attacker's account).
func TestLoginCSRF(t *testing.T) {
	e, _ := authEnv(t)
	f := e.loginForm()
	other := e.loginForm()
	for name, tc := range map[string]struct {
		cookies []*http.Cookie
		values  url.Values
		origin  string
	}{
		"no token":          {[]*http.Cookie{f.cookie}, url.Values{"token": {adminToken}}, e.url},
		"no cookie":         {nil, url.Values{"token": {adminToken}, "csrf": {f.csrf}}, e.url},
		"another's token":   {[]*http.Cookie{f.cookie}, url.Values{"token": {adminToken}, "csrf": {other.csrf}}, e.url},
		"foreign origin":    {[]*http.Cookie{f.cookie}, url.Values{"token": {adminToken}, "csrf": {f.csrf}}, "https://evil.example"},
		"null origin":       {[]*http.Cookie{f.cookie}, url.Values{"token": {adminToken}, "csrf": {f.csrf}}, "null"},
		"foreign same-site": {[]*http.Cookie{f.cookie}, url.Values{"token": {adminToken}, "csrf": {f.csrf}}, "http://127.0.0.1:1"},
	} {
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {tc.origin}}
		for _, c := range tc.cookies {
			h.Add("Cookie", c.Name+"="+c.Value)
		}
		resp, body := e.do("POST", "/login", h, strings.NewReader(tc.values.Encode()))
		if resp.StatusCode != http.StatusForbidden || cookieNamed(resp, sessionCookie) != nil {
			t.Errorf("%s: %s %v, want 403 without a session: %.200s", name, resp.Status, resp.Cookies(), body)
		}
	}
	// Fetch metadata from a browser says the form came from elsewhere.
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Sec-Fetch-Site": {"cross-site"}, "Cookie": {f.cookie.Name + "=" + f.cookie.Value}}
	if resp, _ := e.do("POST", "/login", h, strings.NewReader(url.Values{"token": {adminToken}, "csrf": {f.csrf}}.Encode())); resp.StatusCode != http.StatusForbidden {
		t.Errorf("Sec-Fetch-Site cross-site: %s", resp.Status)
	}
	// A body past the limit is refused, not read.
	big := url.Values{"token": {strings.Repeat("x", maxFormBody)}, "csrf": {f.csrf}}
	if resp, _ := e.post("/login", []*http.Cookie{f.cookie}, big); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("oversized form: %s, want 400", resp.Status)
	}
}

// TestRedirectCorpus holds every way of writing another origin that
// browsers accept in a Location header.
func TestRedirectCorpus(t *testing.T) {
	for next, want := range map[string]string{
		"":                               "/",
		"/":                              "/",
		"/groups?status=new":             "/groups?status=new",
		"/crashes/01ABC":                 "/crashes/01ABC",
		"/?node=a%2Fb&since=24h":         "/?node=a%2Fb&since=24h",
		"//evil.example/":                "/",
		"///evil.example/":               "/",
		"/\\evil.example":                "/",
		"\\\\evil.example":               "/",
		"/\\/evil.example":               "/",
		"\\/evil.example":                "/",
		"/\t/evil.example/":              "/",
		"/%09/evil.example/":             "/",
		"\t//evil.example/":              "/",
		"/\n/evil.example/":              "/",
		"/\r\n/evil.example/":            "/",
		"/%0d%0aSet-Cookie:x=y":          "/",
		"/%5Cevil.example":               "/",
		"/%5cevil.example":               "/",
		"/%2F/evil.example":              "/",
		"/%2f%2fevil.example":            "/",
		"%2F%2Fevil.example":             "/",
		"https://evil.example/":          "/",
		"http:evil.example":              "/",
		"javascript:alert(1)":            "/",
		"JavaScript:alert(1)":            "/",
		" /evil":                         "/",
		"evil.example":                   "/",
		"/\x00/evil.example":             "/",
		"/ok#frag":                       "/ok",
		"//user@evil.example":            "/",
		"/@evil.example":                 "/@evil.example",
		"/crashes/x?next=//evil.example": "/crashes/x?next=//evil.example",
		strings.Repeat("/a", 2000):       "/",
	} {
		got := safeNext(next)
		if got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
		// Whatever it returns, a browser resolving it against this site
		// stays on this site.
		base, _ := url.Parse("https://crashes.example.com/login")
		u, err := base.Parse(got)
		if err != nil || u.Host != "crashes.example.com" || u.Scheme != "https" {
			t.Errorf("safeNext(%q) = %q leaves the site (%v, %v)", next, got, u, err)
		}
	}
}

// TestRedirectThroughLogin is the demonstrated attack end to end: the
// query's next survives into the form and comes back as the Location.
func TestRedirectThroughLogin(t *testing.T) {
	e, _ := authEnv(t)
	for _, next := range []string{"/%09/evil.example/", "//evil.example/", "/%5Cevil.example", "https://evil.example/"} {
		resp, body := e.do("GET", "/login?next="+next, nil, nil)
		form := between(string(body), `name="next" value="`, `"`)
		var f loginForm
		f.cookie, f.csrf = cookieNamed(resp, loginCookie), csrfOf(body)
		resp, _ = e.post("/login", []*http.Cookie{f.cookie}, url.Values{"token": {viewerToken}, "next": {form}, "csrf": {f.csrf}})
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/" {
			t.Errorf("next %q: %s to %q, want / (form kept %q)", next, resp.Status, loc, form)
		}
	}
}

func TestRouteErrorsAreJSON(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	e.add(r, true)
	for _, tc := range []struct {
		method, path string
		status       int
		says         string
	}{
		{"GET", "/api/v1/nope", http.StatusNotFound, "no API route"},
		{"GET", "/api/v2/crashes", http.StatusNotFound, "no API route"},
		{"GET", "/api/v1/crashes/" + r.ID + "/threads", http.StatusNotFound, "no API route"},
		{"POST", "/api/v1/crashes", http.StatusMethodNotAllowed, "POST"},
		{"DELETE", "/api/v1/crashes/" + r.ID, http.StatusMethodNotAllowed, "DELETE"},
		{"PUT", "/api/v1/crashes/" + r.ID + "/core", http.StatusMethodNotAllowed, "PUT"},
		{"POST", "/api/v1/groups", http.StatusMethodNotAllowed, "POST"},
	} {
		resp, body := e.do(tc.method, tc.path, nil, nil)
		wantError(t, resp, body, tc.status, tc.says)
		if tc.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow = %q", tc.method, tc.path, resp.Header.Get("Allow"))
		}
	}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/nope", http.StatusNotFound},
		{"GET", "/crashes/", http.StatusNotFound},
		{"POST", "/", http.StatusMethodNotAllowed},
	} {
		resp, _ := e.do(tc.method, tc.path, nil, nil)
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s %s: %s %s", tc.method, tc.path, resp.Status, resp.Header.Get("Content-Type"))
		}
	}
}

// withCSRF adds to a session's header the CSRF token its pages carry, as
// the UI's scripts send it with a POST.
func (e *env) withCSRF(h http.Header) http.Header {
	e.t.Helper()
	_, body := e.do("GET", "/", h, nil)
	out := h.Clone()
	out.Set("X-CSRF-Token", csrfOf(body))
	return out
}
