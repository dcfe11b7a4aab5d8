package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
)

func TestSessionExpires(t *testing.T) {
	clock := testkit.NewClock(time.Now())
	e := newEnvWith(t, func(c *Config) {
		c.Tokens = testTokens(t)
		c.Now = clock.Now
		c.SessionTTL = time.Hour
	})
	if _, body := e.do("GET", "/login", nil, nil); !strings.Contains(string(body), "for an hour or until you sign out") {
		t.Errorf("the form does not say how long the session lasts: %.600s", body)
	}
	f := e.loginForm()
	resp, _ := e.post("/login", []*http.Cookie{f.cookie}, map[string][]string{"token": {viewerToken}, "csrf": {f.csrf}})
	c := cookieNamed(resp, sessionCookie)
	if c == nil || c.MaxAge != 3600 {
		t.Fatalf("session cookie %+v: want Max-Age 3600 from SessionTTL", c)
	}
	h := http.Header{"Cookie": {c.Name + "=" + c.Value}}
	clock.Advance(59 * time.Minute)
	if resp, _ := e.do("GET", "/api/v1/crashes", h, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("session before its end: %s", resp.Status)
	}
	clock.Advance(2 * time.Minute)
	resp, body := e.do("GET", "/api/v1/crashes", h, nil)
	wantError(t, resp, body, http.StatusUnauthorized, "session has ended")
	// A browser that kept the cookie past its Max-Age lands on the form.
	if resp, body := e.do("GET", "/", h, nil); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `action="/login"`) {
		t.Errorf("expired session on a page: %s", resp.Status)
	}
}

// TestTokenRemovedFromFile: taking a token out of the auth file revokes it
// and every session it signed in, without a restart; a broken edit keeps
// the tokens that were in force.
func TestTokenRemovedFromFile(t *testing.T) {
	clock := testkit.NewClock(time.Now())
	path := filepath.Join(t.TempDir(), "auth")
	write := func(content string) {
		t.Helper()
		tmp := path + ".new"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		// As a Kubernetes Secret volume updates: a new file renamed over.
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("%s viewer\n%s debugger\n", viewerToken, debuggerToken))
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(c *Config) { c.Tokens = tokens; c.Now = clock.Now })
	r := storedCrash(e, time.Minute)
	sess := e.signIn(debuggerToken)
	bearer := http.Header{"Authorization": {"Bearer " + debuggerToken}}
	core := "/api/v1/crashes/" + r.ID + "/core"
	for _, h := range []http.Header{sess, bearer} {
		if resp, _ := e.do("GET", core, h, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("before the edit: %s", resp.Status)
		}
	}

	write("this line is broken\n")
	clock.Advance(3 * time.Second)
	if resp, _ := e.do("GET", core, sess, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a broken auth file locked the session out: %s", resp.Status)
	}

	write(fmt.Sprintf("%s viewer\n", viewerToken))
	clock.Advance(3 * time.Second)
	for name, h := range map[string]http.Header{"session": sess, "bearer": bearer} {
		resp, body := e.do("GET", core, h, nil)
		wantError(t, resp, body, http.StatusUnauthorized, "")
		if name == "session" && !strings.Contains(string(body), "revoked") {
			t.Errorf("session: %s does not say it was revoked", body)
		}
	}
	if resp, _ := e.do("GET", "/api/v1/crashes", http.Header{"Authorization": {"Bearer " + viewerToken}}, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("the remaining token: %s", resp.Status)
	}
}

// TestRebindingHost: without auth, a page on another site that resolves
// its own name to 127.0.0.1 must not read cores through the browser.
func TestRebindingHost(t *testing.T) {
	e := newEnv(t)
	r := storedCrash(e, time.Minute)
	core := "/api/v1/crashes/" + r.ID + "/core"
	for _, host := range []string{"rebind.evil.example", "rebind.evil.example:8080", "127.0.0.1.evil.example", "localhost.evil.example", "10.0.0.1:8080", "[::ffff:10.0.0.1]:80"} {
		resp, body := e.getHost(core, host, nil)
		if resp.StatusCode != http.StatusMisdirectedRequest || strings.Contains(string(body), "ELF") {
			t.Errorf("Host %q: %s, want 421 and no core: %.100s", host, resp.Status, body)
		}
	}
	for _, host := range []string{"localhost", "localhost:8080", "LOCALHOST:1", "127.0.0.1:8080", "127.1.2.3", "[::1]:8080"} {
		if resp, _ := e.getHost(core, host, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("Host %q: %s, want 200", host, resp.Status)
		}
	}
	// With auth on any name is answered: a rebinding page has no
	// credentials for it.
	ea, ra := authEnv(t)
	bearer := http.Header{"Authorization": {"Bearer " + debuggerToken}}
	if resp, _ := ea.getHost("/api/v1/crashes/"+ra.ID+"/core", "crashes.example.com", bearer); resp.StatusCode != http.StatusOK {
		t.Errorf("auth on, another Host: %s", resp.Status)
	}
}

// getHost fetches path with header, naming host in the request's Host.
func (e *env) getHost(path, host string, header http.Header) (*http.Response, []byte) {
	e.t.Helper()
	req := e.request(http.MethodGet, path, header, nil)
	req.Host = host
	return e.roundTrip(req)
}

func proxyEnv(t *testing.T, trusted string) *env {
	t.Helper()
	prefixes, err := ParseTrustedProxies(trusted)
	if err != nil {
		t.Fatal(err)
	}
	roles, err := ParseGroupRoles("sre=admin,payments-dev=debugger,*=viewer")
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWith(t, func(c *Config) {
		c.Tokens = testTokens(t)
		c.TrustedProxies = prefixes
		c.GroupRoles = roles
	})
}

func TestProxyHeaders(t *testing.T) {
	as := func(user, groups string) http.Header {
		h := http.Header{"X-Forwarded-Email": {user}}
		if groups != "" {
			h.Set("X-Forwarded-Groups", groups)
		}
		return h
	}
	t.Run("trusted", func(t *testing.T) {
		e := proxyEnv(t, "10.0.0.0/8, 127.0.0.1")
		r := storedCrash(e, time.Minute)
		core := "/api/v1/crashes/" + r.ID + "/core"
		for _, tc := range []struct {
			name   string
			header http.Header
			status int
		}{
			{"no groups: everyone's role", as("ann@example.com", ""), http.StatusForbidden},
			{"debugger group", as("bob@example.com", "staff,payments-dev"), http.StatusOK},
			{"admin group", as("sue@example.com", "sre"), http.StatusOK},
			{"groups in two headers", http.Header{"X-Forwarded-User": {"joe"}, "X-Forwarded-Groups": {"staff", "payments-dev"}}, http.StatusOK},
			// oauth2-proxy passes its own ID token on; the proxy's word is
			// the identity.
			{"proxy user with a foreign bearer", http.Header{"X-Forwarded-User": {"joe"}, "X-Forwarded-Groups": {"sre"}, "Authorization": {"Bearer eyJhbGciOi.not-ours"}}, http.StatusOK},
			{"no user header: tokens as usual", http.Header{"Authorization": {"Bearer " + debuggerToken}}, http.StatusOK},
			{"no user header, no token", http.Header{"X-Forwarded-Groups": {"sre"}}, http.StatusUnauthorized},
		} {
			resp, body := e.do("GET", core, tc.header, nil)
			if resp.StatusCode != tc.status {
				t.Errorf("%s: %s, want %d: %s", tc.name, resp.Status, tc.status, body)
			}
		}
		resp, body := e.do("GET", "/", as("ann@example.com", ""), nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "ann@example.com") || strings.Contains(string(body), "Sign out") {
			t.Errorf("page for a proxy user: %s, want their name and no sign-out form", resp.Status)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		// The test client connects from 127.0.0.1, which is not the proxy.
		e := proxyEnv(t, "10.0.0.0/8")
		r := storedCrash(e, time.Minute)
		for _, h := range []http.Header{as("sue@example.com", "sre"), {"X-Forwarded-User": {"admin"}, "X-Forwarded-Groups": {"sre"}}} {
			resp, body := e.do("GET", "/api/v1/crashes/"+r.ID+"/core", h, nil)
			wantError(t, resp, body, http.StatusUnauthorized, "token")
		}
		// Nor does a forged X-Forwarded-Proto make cookies Secure.
		f := e.loginForm()
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {e.url}, "X-Forwarded-Proto": {"https"},
			"Cookie": {f.cookie.Name + "=" + f.cookie.Value}}
		resp, _ := e.do("POST", "/login", h, strings.NewReader("token="+viewerToken+"&csrf="+f.csrf))
		if c := cookieNamed(resp, sessionCookie); c == nil || c.Secure {
			t.Errorf("untrusted X-Forwarded-Proto: cookie %+v", c)
		}
	})
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "10.0.0.1/8/2"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"sre", "sre=root", "=admin"} {
		if _, err := ParseGroupRoles(bad); err == nil {
			t.Errorf("ParseGroupRoles(%q) accepted", bad)
		}
	}
	if w, err := ParseWeb("https://crashes.example.com", "10.0.0.0/8,192.0.2.7", "sre=admin,*=viewer", time.Hour); err != nil || len(w.TrustedProxies) != 2 || w.GroupRoles["sre"] != RoleAdmin || w.SessionTTL != time.Hour {
		t.Errorf("ParseWeb: %+v, %v", w, err)
	}
	for _, bad := range [][3]string{{"", "", "sre=admin"}, {"crashes.example.com", "", ""}, {"ftp://x", "", ""}, {"", "10.0.0.0/40", ""}} {
		if _, err := ParseWeb(bad[0], bad[1], bad[2], 0); err == nil {
			t.Errorf("ParseWeb(%q) accepted", bad)
		}
	}
	if _, err := New(Config{Web: Web{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}); err == nil {
		t.Error("trusted proxies without tokens accepted")
	}
}

func TestSecureCookie(t *testing.T) {
	signIn := func(e *env, extra http.Header) *http.Cookie {
		t.Helper()
		f := e.loginForm()
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {e.url}, "Cookie": {f.cookie.Name + "=" + f.cookie.Value}}
		for k, v := range extra {
			h[k] = v
		}
		resp, _ := e.do("POST", "/login", h, strings.NewReader("token="+viewerToken+"&csrf="+f.csrf))
		return cookieNamed(resp, sessionCookie)
	}
	pub := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t); c.PublicURL = "https://crashes.example.com" })
	if c := signIn(pub, nil); c == nil || !c.Secure {
		t.Errorf("https public URL: cookie %+v, want Secure", c)
	}
	// The form's Origin is the public URL's, not the Host the proxy used.
	f := pub.loginForm()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"https://crashes.example.com"}, "Cookie": {f.cookie.Name + "=" + f.cookie.Value}}
	if resp, _ := pub.do("POST", "/login", h, strings.NewReader("token="+viewerToken+"&csrf="+f.csrf)); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("form from the public URL: %s", resp.Status)
	}
	proxied := proxyEnv(t, "127.0.0.1/32")
	if c := signIn(proxied, http.Header{"X-Forwarded-Proto": {"https"}}); c == nil || !c.Secure {
		t.Errorf("trusted X-Forwarded-Proto https: cookie %+v, want Secure", c)
	}
	if _, err := New(Config{Web: Web{PublicURL: "crashes.example.com"}}); err == nil {
		t.Error("a public URL without a scheme accepted")
	}
}

// TestViewerSeesNoSecrets: the demonstrated --password=hunter2 reaches a
// debugger as it was and a viewer nowhere.
func TestViewerSeesNoSecrets(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t) })
	r := newReport(time.Minute)
	r.Process.Cmdline = []string{"/usr/local/bin/server", "--password=hunter2", "--db", "postgres://app:s3cr3t@db/x"}
	e.add(r, true)
	viewer := http.Header{"Authorization": {"Bearer " + viewerToken}}
	debugger := http.Header{"Authorization": {"Bearer " + debuggerToken}}
	paths := []string{"/api/v1/crashes", "/api/v1/crashes/" + r.ID, "/api/v1/groups/" + r.Signature, "/crashes/" + r.ID, "/", "/groups/" + r.Signature}
	for _, p := range paths {
		resp, body := e.do("GET", p, viewer, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("viewer %s: %s", p, resp.Status)
		}
		if strings.Contains(string(body), "hunter2") || strings.Contains(string(body), "s3cr3t") {
			t.Errorf("viewer %s shows a secret", p)
		}
	}
	_, body := e.do("GET", "/api/v1/crashes/"+r.ID, viewer, nil)
	var got corepipe.Report
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("redacted report is not JSON: %v\n%.300s", err, body)
	}
	if got.Process.Cmdline[1] != "--password="+corepipe.Redacted || len(got.Goroutines) != len(r.Goroutines) || got.Title != r.Title || got.Process.PID != r.Process.PID {
		t.Errorf("redacted report: cmdline %q, %d goroutines, title %q", got.Process.Cmdline, len(got.Goroutines), got.Title)
	}
	for _, p := range []string{"/api/v1/crashes/" + r.ID, "/crashes/" + r.ID} {
		if _, body := e.do("GET", p, debugger, nil); !strings.Contains(string(body), "hunter2") {
			t.Errorf("debugger %s: the command line is not shown as it was", p)
		}
	}
}

// TestSuidCoreOnlyForAdmin: the core of a setuid program (suid_dumpable=2)
// may hold another user's secrets.
func TestSuidCoreOnlyForAdmin(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t) })
	r := newReport(time.Minute)
	r.Process.Dumpable = 2
	r.Artifacts.Core = corepipe.CoreArtifact{Key: corepipe.CoreKey(&corepipe.Crash{ID: r.ID, CapturedAt: r.CapturedAt, Node: r.Node})}
	e.put(r.Artifacts.Core.Key, zstdBytes(t, []byte("\x7fELF core")))
	r.Artifacts.Executable = corepipe.ExeArtifact{Path: "/usr/bin/sudo", Found: true, Key: corepipe.ExecutableKey("5e1d")}
	e.put(r.Artifacts.Executable.Key, []byte("\x7fELF exe"))
	e.add(r, true)
	for _, p := range []string{"/api/v1/crashes/" + r.ID + "/core", "/api/v1/crashes/" + r.ID + "/executable"} {
		resp, body := e.do("GET", p, http.Header{"Authorization": {"Bearer " + debuggerToken}}, nil)
		wantError(t, resp, body, http.StatusForbidden, "admin")
		if resp, _ := e.do("GET", p, http.Header{"Authorization": {"Bearer " + adminToken}}, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("admin %s: %s", p, resp.Status)
		}
	}
	if _, body := e.do("GET", "/crashes/"+r.ID, http.Header{"Authorization": {"Bearer " + viewerToken}}, nil); !strings.Contains(string(body), "for the admin role only") {
		t.Error("the crash page does not say why its core is for admins")
	}
	// The report itself is still for viewers.
	if resp, _ := e.do("GET", "/api/v1/crashes/"+r.ID, http.Header{"Authorization": {"Bearer " + viewerToken}}, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("viewer, report of a setuid crash: %s", resp.Status)
	}
}

// slowStore serves a blob in pieces with pauses, as a far object store
// does.
type slowStore struct {
	corepipe.BlobStore
	pause time.Duration
}

type slowReader struct {
	ctx   context.Context
	r     io.Reader
	pause time.Duration
}

// Read fails once the request's context is done, as an object store's
// body does.
func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	return s.r.Read(p[:min(len(p), 16<<10)])
}

func (s slowStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.BlobStore.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{slowReader{ctx, rc, s.pause}, rc}, nil
}

// TestDownloadOutlivesWriteTimeout: the server's WriteTimeout and
// ReadTimeout bound ordinary requests, yet a download that keeps making
// progress runs past them.
func TestDownloadOutlivesWriteTimeout(t *testing.T) {
	e := newEnv(t)
	exe := make([]byte, 256<<10)
	r := newReport(time.Minute)
	r.Artifacts.Executable = corepipe.ExeArtifact{Path: "/srv", Found: true, Key: corepipe.ExecutableKey("beef")}
	e.put(r.Artifacts.Executable.Key, exe)
	e.add(r, true)
	srv, err := New(Config{Index: e.index, Blobs: slowStore{e.blobs, 25 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer(srv.Handler())
	if hs.ReadHeaderTimeout == 0 || hs.ReadTimeout == 0 || hs.WriteTimeout == 0 || hs.IdleTimeout == 0 {
		t.Fatalf("server without timeouts: %+v", hs)
	}
	hs.WriteTimeout = 100 * time.Millisecond // 16 reads of 25 ms take 400
	hs.ReadTimeout = 100 * time.Millisecond
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = hs
	ts.Start()
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/v1/crashes/" + r.ID + "/executable")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != int64(len(exe)) {
		t.Errorf("download: %d of %d bytes, %v", n, len(exe), err)
	}
}

// TestSignInReplacesSession: signing in again gets a new ID and ends the
// one presented, so an ID planted in a browser before sign-in (session
// fixation) is worth nothing.
func TestSignInReplacesSession(t *testing.T) {
	e, _ := authEnv(t)
	first := e.signIn(viewerToken)
	f := e.loginForm()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {e.url}}
	h.Add("Cookie", f.cookie.Name+"="+f.cookie.Value)
	h.Add("Cookie", first.Get("Cookie"))
	resp, _ := e.do("POST", "/login", h, strings.NewReader("token="+adminToken+"&csrf="+f.csrf))
	second := cookieNamed(resp, sessionCookie)
	if second == nil || second.Value == strings.TrimPrefix(first.Get("Cookie"), sessionCookie+"=") {
		t.Fatalf("second sign-in: %s, cookie %+v", resp.Status, second)
	}
	if resp, _ := e.do("GET", "/api/v1/crashes", first, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the session presented at sign-in still works: %s", resp.Status)
	}
}

// FuzzSafeNext: whatever a link carries as next, the redirect stays on
// this site, as a browser resolves it.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/%09/evil.example/", "//evil", "/\\evil", "/groups?status=new", "/a/../b", "/%2e%2e/x"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://crashes.example.com/login")
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\t\r\n") {
			t.Fatalf("safeNext(%q) = %q", next, got)
		}
		u, err := base.Parse(got)
		if err != nil || u.Host != base.Host || u.Scheme != base.Scheme {
			t.Fatalf("safeNext(%q) = %q leaves the site: %v %v", next, got, u, err)
		}
	})
}
