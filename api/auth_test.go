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
`, viewerToken, debuggerToken, adminToken)))
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
		"three fields":    "0123456789abcdefgh viewer extra",
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
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t) })
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
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
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
		{"/api/v1/groups", RoleViewer, false},
		{"/api/v1/groups/" + r.Signature, RoleViewer, false},
		{"/api/v1/crashes/" + r.ID + "/core", RoleDebugger, false},
		{"/api/v1/crashes/" + r.ID + "/executable", RoleDebugger, false},
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
		{"bad cookie", http.Header{"Cookie": {tokenCookie + "=nope"}}, RoleNone, true},
		{"viewer", http.Header{"Authorization": {"Bearer " + viewerToken}}, RoleViewer, false},
		{"viewer cookie", http.Header{"Cookie": {tokenCookie + "=" + viewerToken}}, RoleViewer, false},
		{"debugger", http.Header{"Authorization": {"bearer " + debuggerToken}}, RoleDebugger, false},
		{"debugger cookie", http.Header{"Cookie": {tokenCookie + "=" + debuggerToken}}, RoleDebugger, false},
		{"admin", http.Header{"Authorization": {"Bearer " + adminToken}}, RoleAdmin, false},
	}
	for _, rt := range routes {
		for _, c := range creds {
			t.Run(rt.path+"/"+c.name, func(t *testing.T) {
				resp, body := e.do("GET", rt.path, c.header, nil)
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
					if c.bad && !strings.Contains(string(body), "invalid token") && !strings.Contains(string(body), "Bearer") {
						t.Errorf("UI 401 does not say what is wrong with the token: %.300s", body)
					}
					return
				}
				wantError(t, resp, body, want, map[int]string{http.StatusUnauthorized: "token", http.StatusForbidden: "debugger"}[want])
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

func TestLoginFlow(t *testing.T) {
	e, r := authEnv(t)
	form := func(token, next string) io.Reader {
		return strings.NewReader(url.Values{"token": {token}, "next": {next}}.Encode())
	}
	formHeader := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

	resp, body := e.do("GET", "/crashes/"+r.ID, nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `value="/crashes/`+r.ID+`"`) {
		t.Fatalf("signed-out crash page: %s, next not kept: %.400s", resp.Status, body)
	}

	resp, body = e.do("POST", "/login", formHeader, form("wrong-token-wrong-token", "/crashes/"+r.ID))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "invalid token") {
		t.Errorf("wrong token: %s %.200s", resp.Status, body)
	}
	if len(resp.Cookies()) != 0 {
		t.Error("a wrong token set a cookie")
	}

	resp, _ = e.do("POST", "/login", formHeader, form(viewerToken, "/crashes/"+r.ID))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/crashes/"+r.ID {
		t.Fatalf("login: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == tokenCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.MaxAge <= 0 {
		t.Fatalf("login cookie %+v: want HttpOnly, SameSite=Lax, Path=/, an expiry", cookie)
	}
	withCookie := http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}}
	resp, body = e.do("GET", "/crashes/"+r.ID, withCookie, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Sign out") {
		t.Errorf("signed-in crash page: %s", resp.Status)
	}
	// The page links the core, but a viewer may not download it.
	if resp, _ := e.do("GET", "/api/v1/crashes/"+r.ID+"/core", withCookie, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer downloading a core: %s", resp.Status)
	}

	resp, _ = e.do("POST", "/logout", withCookie, nil)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %s, cookies %v", resp.Status, resp.Cookies())
	}

	for next, want := range map[string]string{
		"//evil.example/":       "/",
		"/\\evil.example":       "/",
		"https://evil.example/": "/",
		"":                      "/",
		"/groups?status=new":    "/groups?status=new",
	} {
		resp, _ := e.do("POST", "/login", formHeader, form(adminToken, next))
		if loc := resp.Header.Get("Location"); loc != want {
			t.Errorf("next %q: redirected to %q, want %q", next, loc, want)
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
