// Triage over HTTP: PATCH /api/v1/groups/{signature} for scripts and the
// CLI, and the group page's form for browsers. Both need RoleTriage, and
// both record who made the change.

package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
)

// Triager is what an index needs for groups to be triaged (sqlite.Index is
// one). The server asks its Index for it: an index without it, such as a
// read-only replica, serves groups that cannot be changed.
type Triager interface {
	SetTriage(ctx context.Context, signature string, c corepipe.TriageChange, by corepipe.TriageEvent) (*corepipe.Group, error)
	TriageHistory(ctx context.Context, signature string) ([]corepipe.TriageEvent, error)
}

var errNoTriage = &corepipe.Error{Code: corepipe.EUNAVAILABLE, Message: "this server's index cannot record triage"}

func (s *Server) triager() (Triager, error) {
	t, ok := s.index.(Triager)
	if !ok {
		return nil, errNoTriage
	}
	return t, nil
}

// triageChange is the change q asks for, as of now.
func triageChange(q wire.TriageRequest, now time.Time) (corepipe.TriageChange, error) {
	c := corepipe.TriageChange{Status: q.Status, ResolvedIn: strings.TrimSpace(q.ResolvedIn),
		IgnoreCount: q.IgnoreCount, Comment: strings.TrimSpace(q.Comment)}
	if q.Assignee != nil {
		a := strings.TrimSpace(*q.Assignee)
		c.Assignee = &a
	}
	if q.IssueURL != nil {
		u := strings.TrimSpace(*q.IssueURL)
		c.IssueURL = &u
	}
	if v := strings.TrimSpace(q.IgnoreUntil); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			d, derr := time.ParseDuration(v)
			if derr != nil || d <= 0 {
				return c, fmt.Errorf("%w: ignore_until %q: want an RFC 3339 time or a duration such as 24h", corepipe.ErrInvalid, corepipe.Clip(v, 64))
			}
			t = now.Add(d)
		}
		c.IgnoreUntil = t.UTC()
	}
	return c, nil
}

// who names the requester in a group's history: the proxy's user, the
// token's name from the auth file, else a fingerprint of the token (never
// the token), or "local" with auth off.
func (s *Server) who(id identity) corepipe.TriageEvent {
	ev := corepipe.TriageEvent{Role: id.role.String()}
	switch {
	case s.tokens == nil:
		ev.Who = "local"
	case id.proxy:
		ev.Who = id.user
	default:
		ev.Who = s.tokens.nameOf(id.token)
	}
	return ev
}

// nameOf is the name the auth file gives the token of hash h, else its
// fingerprint: the first 8 hex digits of its SHA-256.
func (t *Tokens) nameOf(h [sha256.Size]byte) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	name := ""
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			name = e.name
		}
	}
	if name == "" {
		name = "token " + hex.EncodeToString(h[:4])
	}
	return name
}

// checkWrite refuses a change a browser did not mean: one signed in by a
// session or by the proxy must also send its CSRF token in X-CSRF-Token,
// since what the browser sends by itself (a cookie, the proxy's) never
// changes anything; and the request must come from this server's origin.
func (s *Server) checkWrite(r *http.Request) error {
	id := identityOf(r)
	if (id.session != nil || id.proxy) && !equalSecret(r.Header.Get("X-CSRF-Token"), s.formCSRF(id)) {
		return errCSRF
	}
	return s.checkOrigin(r)
}

// decodeBody decodes r's JSON body into the struct v points to, refusing
// fields v has not; the error names those it has.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fmt.Errorf("%w: body larger than %d bytes", corepipe.ErrInvalid, tooBig.Limit)
		}
		return fmt.Errorf("%w: body: want a JSON object of %s", corepipe.ErrInvalid, jsonFields(v))
	}
	return nil
}

// jsonFields names the JSON fields of the struct v points to, in order.
func jsonFields(v any) string {
	t := reflect.TypeOf(v).Elem()
	names := make([]string, t.NumField())
	for i := range names {
		names[i], _, _ = strings.Cut(t.Field(i).Tag.Get("json"), ",")
	}
	return strings.Join(names, ", ")
}

// patchGroup changes a group's triage. A browser, signed in by a session
// or by the proxy, must also send its CSRF token in X-CSRF-Token: what the
// browser sends by itself (a cookie, the proxy's) never changes anything.
func (s *Server) patchGroup(w http.ResponseWriter, r *http.Request) error {
	if err := s.checkWrite(r); err != nil {
		return err
	}
	var q wire.TriageRequest
	if err := decodeBody(r, &q); err != nil {
		return err
	}
	c, err := triageChange(q, s.now())
	if err != nil {
		return err
	}
	d, err := s.triage(r.Context(), r.PathValue("signature"), c, identityOf(r))
	if err != nil {
		return err
	}
	d.Crashes = redact(r, d.Crashes)
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (s *Server) triage(ctx context.Context, signature string, c corepipe.TriageChange, id identity) (*groupDetail, error) {
	t, err := s.triager()
	if err != nil {
		return nil, err
	}
	if _, err := t.SetTriage(ctx, signature, c, s.who(id)); err != nil {
		return nil, err
	}
	return s.groupDetail(ctx, signature)
}

// history is a group's triage history, empty when the index keeps none.
func (s *Server) history(ctx context.Context, signature string) ([]corepipe.TriageEvent, error) {
	t, err := s.triager()
	if err != nil {
		return []corepipe.TriageEvent{}, nil
	}
	return t.TriageHistory(ctx, signature)
}

// triageForm is what the group page's form needs.
type triageForm struct {
	// Allowed is whether the viewer may triage; the form is shown only then.
	Allowed bool
	CSRF    string
	Action  string
}

// formCSRF is the CSRF token of the forms on a page for id: its session's;
// for a user the proxy signed in, a MAC of their name (the proxy's own
// cookie is what a forged form would carry); with auth off one for the
// whole server, since nothing names the browser then. A request with a
// bearer token is no browser's and needs none; it gets no form either.
func (s *Server) formCSRF(id identity) string {
	switch {
	case id.session != nil:
		return id.session.csrf
	case id.proxy:
		return s.loginCSRF("triage form of " + id.user)
	case s.tokens == nil:
		return s.loginCSRF("triage form")
	}
	return ""
}

func (s *Server) newTriageForm(r *http.Request, signature string) triageForm {
	id := identityOf(r)
	csrf := s.formCSRF(id)
	return triageForm{Allowed: id.role >= RoleTriage && csrf != "", CSRF: csrf, Action: "/groups/" + signature}
}

// uiTriage takes the group page's form and shows the page again.
func (s *Server) uiTriage(w http.ResponseWriter, r *http.Request) error {
	if err := s.parseForm(w, r); err != nil {
		return err
	}
	id := identityOf(r)
	if !equalSecret(r.PostForm.Get("csrf"), s.formCSRF(id)) {
		return errCSRF
	}
	f := r.PostForm
	q := wire.TriageRequest{Status: corepipe.TriageStatus(f.Get("status")), Comment: f.Get("comment")}
	switch q.Status {
	case corepipe.TriageResolved:
		q.ResolvedIn = f.Get("resolved_in")
		if q.ResolvedIn == "version" {
			q.ResolvedIn = f.Get("version")
		}
	case corepipe.TriageIgnored:
		q.IgnoreUntil = f.Get("ignore_until")
		if v := strings.TrimSpace(f.Get("ignore_count")); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				return fmt.Errorf("%w: ignore for how many crashes: want a positive number", corepipe.ErrInvalid)
			}
			q.IgnoreCount = n
		}
	}
	if f.Has("assignee") {
		a := f.Get("assignee")
		q.Assignee = &a
	}
	if f.Has("issue_url") {
		u := f.Get("issue_url")
		q.IssueURL = &u
	}
	c, err := triageChange(q, s.now())
	if err != nil {
		return err
	}
	signature := r.PathValue("signature")
	if _, err := s.triage(r.Context(), signature, c, id); err != nil {
		return err
	}
	// Post/redirect/get: reloading the page does not post the form again.
	http.Redirect(w, r, (&url.URL{Path: "/groups/" + signature}).EscapedPath(), http.StatusSeeOther)
	return nil
}

// checkIssueTemplate accepts "" or an http(s) URL with the placeholders
// filled in.
func checkIssueTemplate(tmpl string) error {
	if tmpl == "" {
		return nil
	}
	u, err := url.Parse(fillIssue(tmpl, "t", "b", "s"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: issue template %q: want an http(s) URL with {title}, {body} and {signature}", corepipe.ErrInvalid, corepipe.Clip(tmpl, 64))
	}
	return nil
}

func fillIssue(tmpl, title, body, signature string) string {
	q := url.QueryEscape
	return strings.NewReplacer("{title}", q(title), "{body}", q(body), "{signature}", q(signature)).Replace(tmpl)
}

// maxIssueFrames is how much of the stack an issue's body quotes.
const maxIssueFrames = 10

// issueLink is the tracker's new-issue form for the group of d, prefilled
// with its title, signature, top frames and a link back.
func (s *Server) issueLink(r *http.Request, d *groupDetail) string {
	if s.issueTemplate == "" {
		return ""
	}
	g := d.Group
	title := g.Title
	if title == "" {
		title = g.Signature
	}
	var body strings.Builder
	fmt.Fprintf(&body, "Crash group %s: %d crashes from %s to %s, versions %s to %s.\n\n",
		g.Signature, g.Count, g.FirstSeen.UTC().Format(time.RFC3339), g.LastSeen.UTC().Format(time.RFC3339),
		corepipe.ShortVersion(g.FirstVersion), corepipe.ShortVersion(g.LastVersion))
	if len(d.Crashes) > 0 {
		body.WriteString("```\n")
		for i, f := range d.Crashes[0].TopFrames {
			if i == maxIssueFrames {
				break
			}
			fmt.Fprintf(&body, "%s\n\t%s:%d\n", f.Function, f.File, f.Line)
		}
		body.WriteString("```\n\n")
	}
	body.WriteString(s.siteURL(r) + (&url.URL{Path: "/groups/" + g.Signature}).EscapedPath() + "\n")
	return fillIssue(s.issueTemplate, title, body.String(), g.Signature)
}

// siteURL is where people reach this server: its public URL, else the
// host the request named.
func (s *Server) siteURL(r *http.Request) string {
	if s.publicURL != nil {
		return s.publicURL.Scheme + "://" + s.publicURL.Host
	}
	scheme := "http"
	if s.secure(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
