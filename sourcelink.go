package corepipe

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// SourceLinks turn a frame into a link to its source at the revision that
// crashed. A frame's file is first mapped to a repository path: a -trimpath
// build's files already are one (github.com/acme/shop/cart/cart.go), a
// module-cache file is its module's (…/pkg/mod/github.com/acme/lib@v1.2.0/x.go
// is github.com/acme/lib/x.go at v1.2.0), and an absolute path of the main
// module is found by the main module's last element
// (/build/shop/cart/cart.go of github.com/acme/shop). Then the rule with the
// longest matching prefix fills its template; GitHub, GitLab and Codeberg
// (Gitea) need none. The main module's files link at Report.Go.VCSRevision,
// and have no link without one: a link to another commit would show other
// code.
type SourceLinks struct {
	rules []linkRule
}

type linkRule struct {
	prefix   string
	template string
}

// Placeholders of a source link template.
const (
	// {repo}: the path element after the prefix; {path}: the file within
	// it; {rev}: the commit or version; {line}: the line.
	sourceLinkHelp = "PREFIX=URL, the URL with {repo}, {path}, {rev} and {line}"
)

// ParseSourceLinks reads rules as flags spell them, PREFIX=URL each:
//
//	git.example.com/team/=https://git.example.com/team/{repo}/src/{rev}/{path}#L{line}
func ParseSourceLinks(specs []string) (*SourceLinks, error) {
	s := &SourceLinks{}
	for _, spec := range specs {
		prefix, tmpl, ok := strings.Cut(spec, "=")
		u, err := url.Parse(strings.NewReplacer("{repo}", "r", "{path}", "p", "{rev}", "v", "{line}", "1").Replace(tmpl))
		if !ok || prefix == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !strings.Contains(tmpl, "{path}") {
			return nil, fmt.Errorf("%w: source link %q: want %s", ErrInvalid, Clip(spec, 64), sourceLinkHelp)
		}
		s.rules = append(s.rules, linkRule{prefix: prefix, template: tmpl})
	}
	return s, nil
}

// knownHosts link without configuration: {repo} is owner/name there.
var knownHosts = map[string]string{
	"github.com":   "https://github.com/{repo}/blob/{rev}/{path}#L{line}",
	"gitlab.com":   "https://gitlab.com/{repo}/-/blob/{rev}/{path}#L{line}",
	"codeberg.org": "https://codeberg.org/{repo}/src/commit/{rev}/{path}#L{line}",
}

// Link is the URL of frame f of report r, "" when there is none.
func (s *SourceLinks) Link(r *Report, f Frame) string {
	full, rev := sourcePath(r, f.File)
	if full == "" || rev == "" || f.Line <= 0 {
		return ""
	}
	if s != nil {
		best := -1
		for i, rule := range s.rules {
			if strings.HasPrefix(full, rule.prefix) && (best < 0 || len(rule.prefix) > len(s.rules[best].prefix)) {
				best = i
			}
		}
		if best >= 0 {
			rule := s.rules[best]
			repo, file, ok := strings.Cut(strings.TrimPrefix(full, rule.prefix), "/")
			if !ok {
				return ""
			}
			return fill(rule.template, repo, file, rev, f.Line)
		}
	}
	host, rest, _ := strings.Cut(full, "/")
	tmpl, ok := knownHosts[host]
	parts := strings.SplitN(rest, "/", 3)
	if !ok || len(parts) != 3 {
		return ""
	}
	return fill(tmpl, parts[0]+"/"+parts[1], parts[2], rev, f.Line)
}

func fill(tmpl, repo, file, rev string, line int) string {
	esc := func(p string) string { return (&url.URL{Path: p}).EscapedPath() }
	return strings.NewReplacer("{repo}", esc(repo), "{path}", esc(file), "{rev}", url.PathEscape(rev), "{line}", strconv.Itoa(line)).Replace(tmpl)
}

var majorSuffix = regexp.MustCompile(`^v[0-9]+$`)

// pseudoRev is the commit of a Go pseudo-version (v0.0.0-20261101120000-abcdefabcdef).
var pseudoRev = regexp.MustCompile(`-(?:0\.)?\d{14}-([0-9a-f]{12})(?:\+incompatible)?$`)

// sourcePath maps a frame's file to a repository path (module path and file
// within it) and the revision it was built at; "" when it cannot.
func sourcePath(r *Report, file string) (full, rev string) {
	var mainMod, mainRev string
	if r.Go != nil {
		mainMod, mainRev = r.Go.MainModule, r.Go.VCSRevision
	}
	if i := strings.LastIndex(file, "/pkg/mod/"); i >= 0 {
		file = file[i+len("/pkg/mod/"):]
	}
	if !strings.HasPrefix(file, "/") {
		// A module path: of a dependency at a version, or of the main
		// module in a -trimpath build. The standard library's
		// (runtime/panic.go) has no host.
		first, _, _ := strings.Cut(file, "/")
		if !strings.Contains(first, ".") {
			return "", ""
		}
		if at := strings.Index(file, "@"); at >= 0 {
			mod := file[:at]
			ver, rest, ok := strings.Cut(file[at+1:], "/")
			if !ok {
				return "", ""
			}
			if m := pseudoRev.FindStringSubmatch(ver); m != nil {
				ver = m[1]
			}
			return unescapeModule(mod) + "/" + rest, strings.TrimSuffix(ver, "+incompatible")
		}
		if mainMod != "" && strings.HasPrefix(file, mainMod+"/") {
			return file, mainRev
		}
		return "", ""
	}
	if mainMod == "" || mainRev == "" {
		return "", ""
	}
	base := path.Base(mainMod)
	if majorSuffix.MatchString(base) {
		// github.com/acme/shop/v2 is checked out as shop.
		base = path.Base(path.Dir(mainMod))
	}
	marker := "/" + base + "/"
	i := strings.LastIndex(file, marker)
	if i < 0 {
		return "", ""
	}
	return mainMod + "/" + file[i+len(marker):], mainRev
}

// unescapeModule undoes the module cache's case escaping (!a is A).
func unescapeModule(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '!' && i+1 < len(p) {
			i++
			b.WriteString(strings.ToUpper(p[i : i+1]))
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
