package api

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/corepipe/corepipe"
)

// Single sign-on comes from an authenticating proxy in front of the server
// (oauth2-proxy, whose --pass-user-headers is on by default): it signs
// people in with the company's identity provider and passes who they are
// in headers. Those headers are believed only from the proxy's own
// addresses; from anyone else they are ignored, or anyone could claim to
// be an admin.
const (
	headerUser   = "X-Forwarded-User"
	headerEmail  = "X-Forwarded-Email"
	headerGroups = "X-Forwarded-Groups"
	// anyGroup in a group-role map is the role of every user the proxy
	// signed in, whatever their groups.
	anyGroup = "*"
)

// ParseTrustedProxies reads a comma-separated list of addresses and CIDR
// prefixes (10.0.0.0/8,192.0.2.7).
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%w: trusted proxy %q: want an address or a CIDR prefix", corepipe.ErrInvalid, corepipe.Clip(f, 64))
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// ParseGroupRoles reads a comma-separated list of GROUP=ROLE pairs
// (sre=admin,dev=debugger,*=viewer). A user gets the strongest role of
// their groups; "*" is the role of everyone the proxy signed in.
func ParseGroupRoles(s string) (map[string]Role, error) {
	out := map[string]Role{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		i := strings.LastIndexByte(f, '=')
		if i <= 0 {
			return nil, fmt.Errorf("%w: group role %q: want GROUP=ROLE", corepipe.ErrInvalid, corepipe.Clip(f, 64))
		}
		role, err := ParseRole(f[i+1:])
		if err != nil {
			return nil, err
		}
		out[f[:i]] = role
	}
	return out, nil
}

// trustedProxy reports whether r came straight from one of the trusted
// proxies.
func (s *Server) trustedProxy(r *http.Request) bool {
	if len(s.proxies) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// proxyIdentity is the user a trusted proxy vouches for, with the strongest
// role their groups map to (RoleNone when none does: they are signed in but
// may see nothing).
func (s *Server) proxyIdentity(r *http.Request) (identity, bool) {
	if !s.trustedProxy(r) {
		return identity{}, false
	}
	user := strings.TrimSpace(r.Header.Get(headerEmail))
	if user == "" {
		user = strings.TrimSpace(r.Header.Get(headerUser))
	}
	if user == "" {
		return identity{}, false
	}
	role := s.groupRoles[anyGroup]
	for _, v := range r.Header.Values(headerGroups) {
		for g := range strings.SplitSeq(v, ",") {
			role = max(role, s.groupRoles[strings.TrimSpace(g)])
		}
	}
	return identity{role: role, user: user, proxy: true}, true
}
