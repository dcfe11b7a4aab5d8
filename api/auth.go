package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corepipe/corepipe"
)

// Role is what a token may do. Each role can do everything the roles below
// it can.
type Role int

// Roles, weakest first. RoleNone is no role at all: a request without a
// valid token.
const (
	RoleNone Role = iota
	// RoleViewer reads reports, groups and metrics.
	RoleViewer
	// RoleTriage also changes groups: resolves, ignores, assigns them. It
	// sees no more than a viewer: triage needs no secrets.
	RoleTriage
	// RoleDebugger also downloads cores and executables, which hold the
	// crashed process's secrets.
	RoleDebugger
	// RoleAdmin can do everything, including downloading the core of a
	// setuid program (suid_dumpable=2), which may hold another user's
	// secrets.
	RoleAdmin
)

var roleNames = map[Role]string{RoleNone: "none", RoleViewer: "viewer", RoleTriage: "triage", RoleDebugger: "debugger", RoleAdmin: "admin"}

func (r Role) String() string { return roleNames[r] }

// ParseRole reads a role name of an auth file.
func ParseRole(s string) (Role, error) {
	for r, name := range roleNames {
		if r != RoleNone && name == s {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("%w: role %q: want viewer, triage, debugger or admin", corepipe.ErrInvalid, corepipe.Clip(s, 64))
}

// minTokenLen keeps guessable tokens out of auth files.
const minTokenLen = 16

// tokensRecheck is how often an auth file is looked at again: removing a
// token from it revokes the token, and the browser sessions signed in with
// it, within this long.
const tokensRecheck = 2 * time.Second

// Tokens are the bearer tokens the server accepts, each with its role. Tokens
// loaded from a file follow the file: a token removed from it stops working,
// and so do the sessions signed in with it.
type Tokens struct {
	path string

	mu      sync.Mutex
	entries []tokenEntry
	stamp   fileStamp
	checked time.Time
	// failed is the stamp of a file that would not parse: it is reported
	// once, and the tokens before it stay in force.
	failed fileStamp
}

type tokenEntry struct {
	// hash is the token's SHA-256: comparing fixed-length hashes takes the
	// same time whatever the candidate's length or content.
	hash [sha256.Size]byte
	role Role
	// name is who the token is, for the history of what it changed.
	name string
}

// fileStamp tells a changed file from the one read last: a Kubernetes
// Secret volume swaps a symlink (a new inode), an editor rewrites in place
// (a new size or mtime).
type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = uint64(sys.Dev), sys.Ino
	}
	return st
}

// LoadTokens reads an auth file: one "TOKEN ROLE [NAME]" per line, roles
// viewer, triage, debugger or admin, NAME who holds the token (a person, a
// team, a bot) as group histories name them; blank lines and lines starting with # are ignored. The
// file is read again when it changes.
func LoadTokens(path string) (*Tokens, error) {
	entries, stamp, err := readTokens(path)
	if err != nil {
		return nil, err
	}
	return &Tokens{path: path, entries: entries, stamp: stamp, checked: time.Now()}, nil
}

func readTokens(path string) ([]tokenEntry, fileStamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("auth file: %w", err)
	}
	t, err := ParseTokens(f)
	if err != nil {
		return nil, stampOf(fi), fmt.Errorf("auth file %s: %w", path, err)
	}
	return t.entries, stampOf(fi), nil
}

// ParseTokens reads the auth file format of LoadTokens.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]bool{}
	err := corepipe.EachRule(r, func(n int, fields []string) error {
		if len(fields) != 2 && len(fields) != 3 {
			return fmt.Errorf("line %d: want \"TOKEN ROLE [NAME]\"", n)
		}
		if len(fields[0]) < minTokenLen {
			return fmt.Errorf("line %d: token shorter than %d characters", n, minTokenLen)
		}
		role, err := ParseRole(fields[1])
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		h := sha256.Sum256([]byte(fields[0]))
		if seen[h] {
			return fmt.Errorf("line %d: token listed twice", n)
		}
		seen[h] = true
		e := tokenEntry{hash: h, role: role}
		if len(fields) == 3 {
			e.name = fields[2]
		}
		t.entries = append(t.entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("no tokens: an empty auth file would lock everyone out")
	}
	return t, nil
}

// refresh reads the auth file again if it changed since it was last read,
// looking at most every tokensRecheck. A file that does not parse leaves
// the previous tokens in force (an operator's typo must not lock everyone
// out) and is reported, once, as the error.
func (t *Tokens) refresh(now time.Time) (reloaded bool, err error) {
	if t.path == "" {
		return false, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.checked) < tokensRecheck && !now.Before(t.checked) {
		return false, nil
	}
	t.checked = now
	fi, err := os.Stat(t.path)
	if err != nil {
		if t.failed == (fileStamp{}) {
			t.failed = fileStamp{mtime: -1}
			return false, fmt.Errorf("auth file: %w (keeping the tokens read before)", err)
		}
		return false, nil
	}
	st := stampOf(fi)
	if st == t.stamp {
		t.failed = fileStamp{} // back as it was: report the next failure
		return false, nil
	}
	if st == t.failed {
		return false, nil
	}
	entries, st, err := readTokens(t.path)
	if err != nil {
		t.failed = st
		return false, fmt.Errorf("%w (keeping the tokens read before)", err)
	}
	t.entries, t.stamp, t.failed = entries, st, fileStamp{}
	return true, nil
}

// role returns the role of token, RoleNone when it is not one of ours.
func (t *Tokens) role(token string) Role {
	return t.roleOf(sha256.Sum256([]byte(token)))
}

// roleOf compares against every entry, so its time does not say which one
// matched.
func (t *Tokens) roleOf(h [sha256.Size]byte) Role {
	t.mu.Lock()
	defer t.mu.Unlock()
	found := RoleNone
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			found = e.role
		}
	}
	return found
}

// bearer is the token of an Authorization header; "" without one.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", nil
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", fmt.Errorf("%w: want \"Authorization: Bearer <token>\"", corepipe.ErrUnauthorized)
	}
	return strings.TrimSpace(token), nil
}

// identity is who a request comes from, once authenticated.
type identity struct {
	role Role
	// user is who the proxy signed in; "" for a token.
	user string
	// session is the browser session the request presented, if any.
	session *session
	// token is the request's token's SHA-256; zero for a proxy's user.
	token [sha256.Size]byte
	// proxy is set when an authenticating proxy vouched for the user.
	proxy bool
}

type identityKey struct{}

// identityOf is the identity guard found for r; with auth off, everyone is
// admin.
func identityOf(r *http.Request) identity {
	id, _ := r.Context().Value(identityKey{}).(identity)
	return id
}

// seesSecrets reports whether r may see the crashed process's command line
// as it was: those who may download its core, which holds it anyway.
func seesSecrets(r *http.Request) bool { return identityOf(r).role >= RoleDebugger }

// redact returns reports as r may see them: scrubbed by
// corepipe.RedactArgs below the debugger role.
func redact(r *http.Request, reports []*corepipe.Report) []*corepipe.Report {
	if seesSecrets(r) {
		return reports
	}
	out := make([]*corepipe.Report, len(reports))
	for i, rep := range reports {
		out[i] = rep.Redacted()
	}
	return out
}

// identify finds who r comes from: an authenticating proxy's headers (from
// a trusted address only), else a bearer token, else a session cookie.
func (s *Server) identify(r *http.Request) (identity, error) {
	if s.tokens == nil {
		return identity{role: RoleAdmin}, nil
	}
	if reloaded, err := s.tokens.refresh(s.now()); err != nil {
		s.log.Error("auth file not reloaded", slog.Any("err", err))
	} else if reloaded {
		s.log.Info("auth file reloaded")
	}
	if id, ok := s.proxyIdentity(r); ok {
		return id, nil
	}
	token, err := bearer(r)
	if err != nil {
		return identity{}, err
	}
	if token != "" {
		role := s.tokens.role(token)
		if role == RoleNone {
			return identity{}, fmt.Errorf("%w: invalid token", corepipe.ErrUnauthorized)
		}
		return identity{role: role, token: sha256.Sum256([]byte(token))}, nil
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		sess := s.sessions.get(c.Value, s.now())
		if sess == nil {
			return identity{}, fmt.Errorf("%w: the session has ended: sign in again with your token", corepipe.ErrUnauthorized)
		}
		role := s.tokens.roleOf(sess.token)
		if role == RoleNone {
			// The token was removed from the auth file: so is the session.
			s.sessions.remove(c.Value)
			return identity{}, fmt.Errorf("%w: the session's token was revoked", corepipe.ErrUnauthorized)
		}
		return identity{role: role, session: sess, token: sess.token}, nil
	}
	return identity{}, fmt.Errorf("%w: a token is required (Authorization: Bearer TOKEN, or sign in at /login)", corepipe.ErrUnauthorized)
}

// authorize returns who r comes from when they may do what needs role.
func (s *Server) authorize(r *http.Request, need Role) (identity, error) {
	id, err := s.identify(r)
	if err != nil {
		if need == RoleNone {
			return identity{}, nil
		}
		return identity{}, err
	}
	if id.role < need {
		return id, fmt.Errorf("%w: this needs the %s role, %s has %s", corepipe.ErrForbidden, need, id.describe(), id.role)
	}
	return id, nil
}

func (id identity) describe() string {
	if id.proxy {
		return corepipe.Clip(id.user, 64)
	}
	return "the token"
}

// Listen opens the server's listener on addr. Without tokens anyone who can
// connect may download cores, which hold secrets: then only loopback
// addresses are accepted.
func Listen(addr string, tokens *Tokens) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); tokens == nil && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("listen %q: without --auth-file the API listens only on loopback (127.0.0.1, ::1, localhost)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}
