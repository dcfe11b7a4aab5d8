package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/corepipe/corepipe"
)

// A browser signs in once with a token and then presents a session cookie:
// a random ID that means something only to this server, expires, and ends
// on sign-out or when its token leaves the auth file. The token itself
// never goes into a cookie.
const (
	sessionCookie = "corepipe_session"
	// loginCookie holds the nonce that the sign-in form's CSRF token is
	// bound to, before there is a session.
	loginCookie = "corepipe_login"
	// DefaultSessionTTL is how long a browser stays signed in.
	DefaultSessionTTL = 12 * time.Hour
	loginNonceTTL     = time.Hour
	// maxSessions bounds the memory of the session table; past it the
	// session closest to its end goes first.
	maxSessions = 10000
	// maxFormBody bounds the body of every form POST: a token, a path and
	// a CSRF token.
	maxFormBody = 8 << 10
)

type session struct {
	// token is the SHA-256 of the token that signed in: its role is looked
	// up on every request, so a role change or a removal takes effect.
	token   [sha256.Size]byte
	csrf    string
	expires time.Time
}

// sessions is the server's table of signed-in browsers. Sessions live in
// memory: a restart signs everyone out, which is the safe direction.
type sessions struct {
	mu sync.Mutex
	// m is keyed by the SHA-256 of the session ID, so the table holds
	// nothing a reader of the process's memory could present as a cookie.
	m map[[sha256.Size]byte]*session
}

func newSessions() *sessions { return &sessions{m: map[[sha256.Size]byte]*session{}} }

func (ss *sessions) create(token [sha256.Size]byte, expires, now time.Time) (id string, s *session) {
	id = rand.Text()
	s = &session{token: token, csrf: rand.Text(), expires: expires}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= maxSessions {
		ss.evict(now)
	}
	ss.m[sha256.Sum256([]byte(id))] = s
	return id, s
}

// evict drops the expired sessions, and if none had expired the one that
// would end first.
func (ss *sessions) evict(now time.Time) {
	var first [sha256.Size]byte
	var firstEnd time.Time
	dropped := false
	for k, s := range ss.m {
		if !now.Before(s.expires) {
			delete(ss.m, k)
			dropped = true
		} else if firstEnd.IsZero() || s.expires.Before(firstEnd) {
			first, firstEnd = k, s.expires
		}
	}
	if !dropped && !firstEnd.IsZero() {
		delete(ss.m, first)
	}
}

// get returns the live session of id, nil when there is none.
func (ss *sessions) get(id string, now time.Time) *session {
	k := sha256.Sum256([]byte(id))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[k]
	if s == nil {
		return nil
	}
	if !now.Before(s.expires) {
		delete(ss.m, k)
		return nil
	}
	return s
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, sha256.Sum256([]byte(id)))
}

// secure says whether cookies set for r must be Secure: the public URL is
// https, the connection is TLS, or a trusted proxy terminated TLS.
func (s *Server) secure(r *http.Request) bool {
	if s.publicURL != nil && s.publicURL.Scheme == "https" || r.TLS != nil {
		return true
	}
	return s.trustedProxy(r) && strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
}

func (s *Server) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteLaxMode}
	if maxAge > 0 {
		c.MaxAge = int(maxAge.Seconds())
	} else {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// loginCSRF is the CSRF token of the sign-in form for nonce: a MAC, so
// that the server keeps no state for people who have not signed in.
func (s *Server) loginCSRF(nonce string) string {
	m := hmac.New(sha256.New, s.csrfKey[:])
	m.Write([]byte("login\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// loginNonce returns the nonce of r's login cookie, setting a new one when
// r has none.
func (s *Server) loginNonce(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) >= 16 && len(c.Value) <= 64 {
		return c.Value
	}
	nonce := rand.Text()
	s.setCookie(w, r, loginCookie, nonce, loginNonceTTL)
	return nonce
}

var errCSRF = fmt.Errorf("%w: the form is stale or came from another site: reload the page and try again", corepipe.ErrForbidden)

// checkOrigin refuses a form that a browser posted from another site. The
// Fetch metadata, else Origin, else Referer say where the form was; a
// request with none of them is no browser's, and still needs the CSRF
// token.
func (s *Server) checkOrigin(r *http.Request) error {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "":
	case "same-origin", "none":
		return nil
	default:
		return errCSRF
	}
	from := r.Header.Get("Origin")
	if from == "" {
		from = r.Header.Get("Referer")
	}
	if from == "" {
		return nil
	}
	u, err := url.Parse(from)
	if err != nil || u.Host == "" {
		return errCSRF // "null" and the like: an opaque origin
	}
	if strings.EqualFold(u.Host, r.Host) || s.publicURL != nil && strings.EqualFold(u.Host, s.publicURL.Host) {
		return nil
	}
	return errCSRF
}

// parseForm reads a POSTed form within maxFormBody and checks where it
// came from.
func (s *Server) parseForm(w http.ResponseWriter, r *http.Request) error {
	if err := s.checkOrigin(r); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("%w: form: %v", corepipe.ErrInvalid, err)
	}
	return nil
}

func equalSecret(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// login checks the token typed into the form and starts a session, whose
// cookie pages and download links then present: the UI needs no script to
// authenticate. SameSite=Lax still sends it when someone follows a link to
// a crash from chat.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.tokens == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if err := s.parseForm(w, r); err != nil {
		s.renderLogin(w, r, errorStatus(err), "", err)
		return
	}
	token, next := strings.TrimSpace(r.PostForm.Get("token")), r.PostForm.Get("next")
	c, err := r.Cookie(loginCookie)
	if err != nil || !equalSecret(r.PostForm.Get("csrf"), s.loginCSRF(c.Value)) {
		s.renderLogin(w, r, http.StatusForbidden, next, errCSRF)
		return
	}
	h := sha256.Sum256([]byte(token))
	if s.tokens.roleOf(h) == RoleNone {
		s.renderLogin(w, r, http.StatusUnauthorized, next, fmt.Errorf("%w: invalid token", corepipe.ErrUnauthorized))
		return
	}
	// A new ID on every sign-in: a session ID planted before it (session
	// fixation) never becomes a signed-in one.
	if old, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.remove(old.Value)
	}
	now := s.now()
	id, _ := s.sessions.create(h, now.Add(s.sessionTTL), now)
	s.setCookie(w, r, sessionCookie, id, s.sessionTTL)
	s.setCookie(w, r, loginCookie, "", 0)
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// logout ends the session on the server, not only in the browser: a copied
// cookie stops working too.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.parseForm(w, r); err != nil {
		s.uiError(w, r, err)
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if sess := s.sessions.get(c.Value, s.now()); sess != nil {
			if !equalSecret(r.PostForm.Get("csrf"), sess.csrf) {
				s.uiError(w, r, errCSRF)
				return
			}
			s.sessions.remove(c.Value)
		}
	}
	s.setCookie(w, r, sessionCookie, "", 0)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext keeps the redirect after login on this site: an absolute path
// of this origin, else "/". Browsers forgive a lot on the way from a
// Location header to a URL (they drop TAB, CR and LF, read '\' as '/', and
// "//host" as another host), so anything they could read as another
// origin is refused, not repaired.
func safeNext(next string) string {
	if next == "" || len(next) > 2048 || next[0] != '/' {
		return "/"
	}
	for _, c := range next {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "/"
	}
	// What the browser will ask for once percent-escapes are decoded must
	// not start a network-path reference either: "/%2F%2Fhost", "/%5Chost".
	if p := u.Path; strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\t\r\n") {
		return "/"
	}
	if raw := strings.ToLower(u.EscapedPath()); strings.HasPrefix(raw, "/%2f") || strings.HasPrefix(raw, "/%5c") || strings.Contains(raw, "%09") || strings.Contains(raw, "%0a") || strings.Contains(raw, "%0d") {
		return "/"
	}
	return u.RequestURI()
}
