package api

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

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
	// RoleDebugger also downloads cores and executables, which hold the
	// crashed process's secrets.
	RoleDebugger
	// RoleAdmin can do everything; nothing needs more than debugger yet.
	RoleAdmin
)

var roleNames = map[Role]string{RoleNone: "none", RoleViewer: "viewer", RoleDebugger: "debugger", RoleAdmin: "admin"}

func (r Role) String() string { return roleNames[r] }

// ParseRole reads a role name of an auth file.
func ParseRole(s string) (Role, error) {
	for r, name := range roleNames {
		if r != RoleNone && name == s {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("%w: role %q: want viewer, debugger or admin", corepipe.ErrInvalid, truncate(s))
}

// minTokenLen keeps guessable tokens out of auth files.
const minTokenLen = 16

// Tokens are the bearer tokens the server accepts, each with its role.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	// hash is the token's SHA-256: comparing fixed-length hashes takes the
	// same time whatever the candidate's length or content.
	hash [sha256.Size]byte
	role Role
}

// LoadTokens reads an auth file: one "TOKEN ROLE" per line, roles viewer,
// debugger or admin; blank lines and lines starting with # are ignored.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens reads the auth file format of LoadTokens.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"TOKEN ROLE\"", n)
		}
		if len(fields[0]) < minTokenLen {
			return nil, fmt.Errorf("line %d: token shorter than %d characters", n, minTokenLen)
		}
		role, err := ParseRole(fields[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		h := sha256.Sum256([]byte(fields[0]))
		if seen[h] {
			return nil, fmt.Errorf("line %d: token listed twice", n)
		}
		seen[h] = true
		t.entries = append(t.entries, tokenEntry{hash: h, role: role})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("no tokens: an empty auth file would lock everyone out")
	}
	return t, nil
}

// role returns the role of token, RoleNone when it is not one of ours. It
// compares against every entry, so its time does not say which one matched.
func (t *Tokens) role(token string) Role {
	h := sha256.Sum256([]byte(token))
	found := RoleNone
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			found = e.role
		}
	}
	return found
}

// tokenCookie carries the token of a browser session that signed in
// through the login form: pages and download links work without scripts.
const tokenCookie = "corepipe_token"

// credential is the token a request presents: the Authorization header,
// else the login cookie.
func credential(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", fmt.Errorf("%w: want \"Authorization: Bearer <token>\"", corepipe.ErrUnauthorized)
		}
		return strings.TrimSpace(token), nil
	}
	if c, err := r.Cookie(tokenCookie); err == nil && c.Value != "" {
		return c.Value, nil
	}
	return "", fmt.Errorf("%w: a token is required (Authorization: Bearer TOKEN, or sign in at /login)", corepipe.ErrUnauthorized)
}

// authorize returns nil when r may do what needs role.
func (s *Server) authorize(r *http.Request, need Role) error {
	if s.tokens == nil || need == RoleNone {
		return nil
	}
	token, err := credential(r)
	if err != nil {
		return err
	}
	have := s.tokens.role(token)
	if have == RoleNone {
		return fmt.Errorf("%w: invalid token", corepipe.ErrUnauthorized)
	}
	if have < need {
		return fmt.Errorf("%w: this needs the %s role, the token has %s", corepipe.ErrForbidden, need, have)
	}
	return nil
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
