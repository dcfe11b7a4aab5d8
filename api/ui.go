package api

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
)

// ui holds the page templates and the static files. html/template escapes
// everything by context: crash text (panic messages, frames, labels, pod
// names) comes from the crashed program and must stay text.
//
//go:embed ui
var ui embed.FS

// maxUIGoroutines caps the goroutines one detail page renders: a leak can
// leave 100 000 of them, which no browser lays out usably. The JSON has all.
const maxUIGoroutines = 1000

// maxUIGroupIDs caps the goroutine IDs listed under one goroutine group.
const maxUIGroupIDs = 50

// defaultServer is where the CLI looks for the API unless told otherwise;
// the debug line a crash page offers names the server only when it is
// somewhere else.
const defaultServer = "http://127.0.0.1:8080"

type pages struct {
	list, crash, groups, group, login, error *template.Template
	releases                                 *template.Template
}

func parsePages() pages {
	funcs := template.FuncMap{
		"when":       func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"day":        func(t time.Time) string { return t.UTC().Format("2006-01-02") },
		"headline":   (*corepipe.Report).Headline,
		"sourceName": corepipe.SourceName,
		"join":       strings.Join,
		"workload":   workload,
		"ids":        goroutineIDs,
		"frames":     frameList,
		"own":        corepipe.OwnFrame,
		"version":    corepipe.ShortVersion,
	}
	parse := func(page string) *template.Template {
		return template.Must(template.New("layout.html").Funcs(funcs).ParseFS(ui, "ui/layout.html", "ui/parts.html", "ui/"+page))
	}
	return pages{
		list: parse("list.html"), crash: parse("crash.html"), groups: parse("groups.html"),
		group: parse("group.html"), login: parse("login.html"), error: parse("error.html"),
		releases: parse("releases.html"),
	}
}

func staticHandler() http.Handler {
	static, err := fs.Sub(ui, "ui/static")
	if err != nil {
		panic(err) // the path is a constant inside the embedded tree
	}
	return http.FileServerFS(static)
}

// workload is namespace/pod for Kubernetes, "" elsewhere: the list shows
// the executable for those.
func workload(r *corepipe.Report) string {
	if c := r.Container; c != nil && c.Pod != "" {
		return c.Namespace + "/" + c.Pod
	}
	return ""
}

// frameList renders a stack as the list the stylesheet lays out. Stacks are
// most of a crash page (thousands of frames), and going through the
// template engine for each field of each frame made a page of 200
// goroutines cost tens of milliseconds; every string still goes through
// the HTML escaper.
func frameList(frames []corepipe.Frame) template.HTML { return stackList(frames, nil, nil) }

// stackList is frameList with each location linked to link(frame), when
// that is not "", and, when inApp is set, the application's frames marked
// and every run of two or more other frames (the runtime's, the standard
// library's, other modules') folded into a closed <details>.
func stackList(frames []corepipe.Frame, link func(corepipe.Frame) string, inApp func(corepipe.Frame) bool) template.HTML {
	var b strings.Builder
	b.WriteString(`<ol class="frames">`)
	for i := 0; i < len(frames); {
		if inApp == nil {
			writeFrame(&b, frames[i], link, "")
			i++
			continue
		}
		if inApp(frames[i]) {
			writeFrame(&b, frames[i], link, "app")
			i++
			continue
		}
		j := i
		for j < len(frames) && !inApp(frames[j]) {
			j++
		}
		if j-i == 1 {
			writeFrame(&b, frames[i], link, "lib")
			i = j
			continue
		}
		fmt.Fprintf(&b, `<li class="folded"><details><summary>%d frames of the runtime and libraries</summary><ol class="frames">`, j-i)
		for _, f := range frames[i:j] {
			writeFrame(&b, f, link, "lib")
		}
		b.WriteString(`</ol></details></li>`)
		i = j
	}
	b.WriteString(`</ol>`)
	return template.HTML(b.String())
}

func writeFrame(b *strings.Builder, f corepipe.Frame, link func(corepipe.Frame) string, class string) {
	if class != "" {
		b.WriteString(`<li class="` + class + `">`)
	} else {
		b.WriteString(`<li>`)
	}
	b.WriteString(`<span class="fn">`)
	b.WriteString(template.HTMLEscapeString(f.Function))
	b.WriteString(`</span>`)
	if f.File != "" {
		href := ""
		if link != nil {
			href = link(f)
		}
		if href != "" {
			b.WriteString(`<a class="loc" rel="noreferrer" href="`)
			b.WriteString(template.HTMLEscapeString(href))
			b.WriteString(`">`)
		} else {
			b.WriteString(`<span class="loc">`)
		}
		b.WriteString(template.HTMLEscapeString(f.File))
		b.WriteString(":")
		b.WriteString(strconv.Itoa(f.Line))
		if href != "" {
			b.WriteString(`</a>`)
		} else {
			b.WriteString(`</span>`)
		}
	}
	b.WriteString(`</li>`)
}

func goroutineIDs(ids []int64) string {
	var b strings.Builder
	for i, id := range ids {
		if i == maxUIGroupIDs {
			fmt.Fprintf(&b, " … %d more", len(ids)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, id)
	}
	return b.String()
}

type listPage struct {
	Filter   corepipe.CrashFilter
	Since    string
	Statuses []corepipe.ReportStatus
	Crashes  []*corepipe.Report
	NextURL  string
}

func (s *Server) uiList(w http.ResponseWriter, r *http.Request) error {
	f, crashes, next, err := listOf(r, wire.ParseCrashQuery, s.index.Crashes)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	p := listPage{
		Filter:   f,
		Since:    q.Get("since"),
		Statuses: wire.CrashStatuses,
		Crashes:  redact(r, crashes),
	}
	if next != "" {
		p.NextURL = "/?" + withCursor(q, next).Encode()
	}
	s.render(w, r, http.StatusOK, s.pages.list, p)
	return nil
}

// withCursor keeps every filter of the current page, so that the next page
// is the same query further on.
func withCursor(q url.Values, cursor string) url.Values {
	next := url.Values{}
	for k, v := range q {
		if len(v) > 0 && v[0] != "" {
			next.Set(k, v[0])
		}
	}
	next.Set("cursor", cursor)
	return next
}

type crashPage struct {
	Report   *corepipe.Report
	Crashing *corepipe.Goroutine
	Others   []corepipe.Goroutine
	Hidden   int
	// Pending is set when only the indexed summary exists: the analysis has
	// not stored its report (yet), so there are no stacks to show.
	Pending bool
	// Debug is the command that opens this crash in delve.
	Debug string
	// CrashingFrames is the crashing goroutine's stack, its frames linked
	// to their source.
	CrashingFrames template.HTML
	// Core is where the crash's core is; CoreCSRF, set when the viewer may
	// ask the node that keeps it, is the request form's token, and
	// CoreRequested says the viewer just did.
	Core          corepipe.CoreLocation
	CoreCSRF      string
	CoreRequested bool
}

// withCore fills in where p's core is and whether r may request it.
func (s *Server) withCore(r *http.Request, p crashPage) crashPage {
	p.Core = p.Report.Artifacts.Core.Where(s.now())
	if p.Core.State == corepipe.CoreOnNode && identityOf(r).role >= RoleDebugger {
		p.CoreCSRF = s.formCSRF(identityOf(r))
	}
	p.CoreRequested = r.URL.Query().Get("core") == "requested"
	return p
}

func (s *Server) uiCrash(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	sum, err := s.crash(r.Context(), id)
	if err != nil {
		return err
	}
	debug := s.debugCommand(r, id)
	p, err := s.loadCrashPage(r, id)
	if errors.Is(err, corepipe.ErrNotFound) {
		s.render(w, r, http.StatusOK, s.pages.crash, s.withCore(r, crashPage{Report: redact(r, []*corepipe.Report{sum})[0], Pending: true, Debug: debug}))
		return nil
	}
	if err != nil {
		return err
	}
	p.Debug = debug
	if p.Crashing != nil {
		rep := p.Report
		p.CrashingFrames = stackList(p.Crashing.Frames, func(f corepipe.Frame) string { return s.sourceLinks.Link(rep, f) }, rep.InApp)
	}
	s.render(w, r, http.StatusOK, s.pages.crash, s.withCore(r, p))
	return nil
}

// debugCommand is the line to paste into a terminal. It names the server the
// page came from (its public URL behind a proxy) unless that is the CLI's
// default.
func (s *Server) debugCommand(r *http.Request, id string) string {
	scheme := "http"
	if s.secure(r) {
		scheme = "https"
	}
	server := scheme + "://" + r.Host
	if s.publicURL != nil {
		server = s.publicURL.Scheme + "://" + s.publicURL.Host
	}
	if server == defaultServer || r.Host == "" {
		return "corepipe debug " + id
	}
	return "corepipe debug --server " + server + " " + id
}

// loadCrashPage reads the stored report of id for its page, keeping of its
// goroutines only the crashing one and the first maxUIGoroutines others:
// the page of a leak of 100 000 goroutines holds a thousand of them and
// the report's distinct stacks, each decoded once.
func (s *Server) loadCrashPage(r *http.Request, id string) (crashPage, error) {
	rc, err := s.openReport(r.Context(), id)
	if err != nil {
		return crashPage{}, err
	}
	defer rc.Close()
	var p crashPage
	rep, err := corepipe.ReadStoredEach(rc, func(head *corepipe.Report, g corepipe.Goroutine) error {
		switch {
		case g.ID == head.CrashingGoroutine && g.ID != 0 && p.Crashing == nil:
			p.Crashing = &g
		case len(p.Others) == maxUIGoroutines:
			p.Hidden++
		default:
			p.Others = append(p.Others, g)
		}
		return nil
	})
	if err != nil {
		return crashPage{}, storedErr(id, err)
	}
	if i := slices.IndexFunc(p.Others, func(g corepipe.Goroutine) bool { return g.ID == rep.CrashingGoroutine }); p.Crashing == nil && rep.CrashingGoroutine != 0 && i >= 0 {
		// A report that names its crashing goroutine after listing them.
		p.Crashing = &p.Others[i]
		p.Others = slices.Delete(slices.Clone(p.Others), i, i+1)
	}
	// The page's report has the goroutines it shows, for what reads them
	// from it (the crashing goroutine, the title's place).
	if p.Crashing != nil {
		rep.Goroutines = append(rep.Goroutines, *p.Crashing)
	}
	rep.Goroutines = append(rep.Goroutines, p.Others...)
	if !seesSecrets(r) {
		rep = rep.Redacted()
	}
	p.Report = rep
	return p, nil
}

type groupsPage struct {
	Filter   corepipe.GroupFilter
	Since    string
	Statuses []corepipe.GroupStatus
	Groups   []*corepipe.Group
	NextURL  string
}

func (s *Server) uiGroups(w http.ResponseWriter, r *http.Request) error {
	f, groups, next, err := listOf(r, wire.ParseGroupQuery, s.index.Groups)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	p := groupsPage{
		Filter:   f,
		Since:    q.Get("since"),
		Statuses: wire.GroupStatuses,
		Groups:   groups,
	}
	if next != "" {
		p.NextURL = "/groups?" + withCursor(q, next).Encode()
	}
	s.render(w, r, http.StatusOK, s.pages.groups, p)
	return nil
}

type groupPage struct {
	*groupDetail
	Chart                       *chart
	AllURL                      string
	VersionTable, WorkloadTable shareTable
	Form                        triageForm
	// IssueLink opens the tracker's new-issue form filled in; "" for none.
	IssueLink string
}

type shareTable struct {
	Name string
	Rows []corepipe.Share
}

func (s *Server) uiGroup(w http.ResponseWriter, r *http.Request) error {
	signature := r.PathValue("signature")
	d, err := s.groupDetail(r.Context(), signature)
	if err != nil {
		return err
	}
	d.Crashes = redact(r, d.Crashes)
	from, step, n := chartRange(d.Group.FirstSeen, d.Group.LastSeen)
	counts, err := s.index.Occurrences(r.Context(), signature, from, step, n)
	if err != nil {
		return err
	}
	p := groupPage{
		groupDetail:   d,
		Chart:         newChart(from, step, counts),
		AllURL:        "/?" + url.Values{"signature": {signature}}.Encode(),
		VersionTable:  shareTable{"Version", d.Versions},
		WorkloadTable: shareTable{"Workload", d.Workloads},
		Form:          s.newTriageForm(r, signature),
		IssueLink:     s.issueLink(r, d),
	}
	s.render(w, r, http.StatusOK, s.pages.group, p)
	return nil
}

type loginPage struct {
	Next    string
	Message string
	CSRF    string
	// Lasts is how long a session lasts, for the sentence under the form.
	Lasts string
}

// lasts says a session lifetime as people do: "12 hours", else "90m0s".
func lasts(d time.Duration) string {
	switch {
	case d == time.Hour:
		return "an hour"
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + " hours"
	}
	return d.String()
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if s.tokens == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, http.StatusOK, r.URL.Query().Get("next"), nil)
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, next string, err error) {
	p := loginPage{Next: safeNext(next), CSRF: s.loginCSRF(s.loginNonce(w, r)), Lasts: lasts(s.sessionTTL)}
	if err != nil {
		_, p.Message = s.errorMessage(r, err)
	}
	s.render(w, r, status, s.pages.login, p)
}

func (s *Server) uiNotFound(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.render(w, r, http.StatusMethodNotAllowed, s.pages.error, errorPage{
			Status: http.StatusMethodNotAllowed, Text: http.StatusText(http.StatusMethodNotAllowed),
			Message: "method " + corepipe.Clip(r.Method, 64) + " not allowed",
		})
		return
	}
	s.uiError(w, r, fmt.Errorf("%w: no page %s", corepipe.ErrNotFound, corepipe.Clip(r.URL.Path, 64)))
}

type errorPage struct {
	Status  int
	Text    string
	Message string
}

func (s *Server) uiError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := s.errorMessage(r, err)
	s.render(w, r, status, s.pages.error, errorPage{Status: status, Text: http.StatusText(status), Message: msg})
}

// view is what the layout renders: the page, and who is looking at it.
type view struct {
	Page any
	// User is who is signed in ("" with auth off); SignOut and CSRF are set
	// for a browser session, which the layout's sign-out form ends.
	User    string
	SignOut bool
	CSRF    string
}

// render executes into a buffer first, so that a template failure becomes a
// 500 rather than half a page under a 200.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any) {
	v := view{Page: data}
	if s.tokens != nil {
		id, ok := r.Context().Value(identityKey{}).(identity)
		if !ok {
			id, _ = s.identify(r)
		}
		v.User = id.user
		if id.session != nil {
			v.SignOut, v.CSRF = true, id.session.csrf
		}
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		_, msg := s.errorMessage(r, fmt.Errorf("render %s: %w", t.Name(), err))
		http.Error(w, msg, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	buf.WriteTo(w)
}
