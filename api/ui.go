package api

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
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

type pages struct {
	list, crash, error *template.Template
}

var funcs = template.FuncMap{
	"when":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"headline": headline,
	"join":     strings.Join,
}

func parsePages() pages {
	parse := func(page string) *template.Template {
		return template.Must(template.New("layout.html").Funcs(funcs).ParseFS(ui, "ui/layout.html", "ui/"+page))
	}
	return pages{list: parse("list.html"), crash: parse("crash.html"), error: parse("error.html")}
}

func staticHandler() http.Handler {
	static, err := fs.Sub(ui, "ui/static")
	if err != nil {
		panic(err) // the path is a constant inside the embedded tree
	}
	return http.FileServerFS(static)
}

// headline is the one line that tells crashes apart in a list.
func headline(r *corepipe.Report) string {
	switch {
	case r.Title != "":
		return r.Title
	case r.Panic != nil && r.Panic.Message != "":
		return r.Panic.Kind + ": " + r.Panic.Message
	case r.Error != "":
		return "analysis failed: " + r.Error
	}
	return "crash " + r.ID
}

type listPage struct {
	Filter   corepipe.CrashFilter
	Statuses []string
	Crashes  []*corepipe.Report
	NextURL  string
}

func (s *Server) uiList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q, time.Now())
	if err != nil {
		s.uiError(w, r, err)
		return
	}
	crashes, next, err := s.index.Crashes(r.Context(), f)
	if err != nil {
		s.uiError(w, r, err)
		return
	}
	p := listPage{
		Filter:   f,
		Statuses: []string{corepipe.StatusAnalyzed, corepipe.StatusFailed, corepipe.StatusPending},
		Crashes:  crashes,
	}
	if next != "" {
		p.NextURL = "/?" + withCursor(q, next).Encode()
	}
	s.render(w, r, http.StatusOK, s.pages.list, p)
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
}

func (s *Server) uiCrash(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sum, err := s.crash(r.Context(), id)
	if err != nil {
		s.uiError(w, r, err)
		return
	}
	rep, err := s.loadReport(r, id)
	if errors.Is(err, corepipe.ErrNotFound) {
		s.render(w, r, http.StatusOK, s.pages.crash, crashPage{Report: sum, Pending: true})
		return
	}
	if err != nil {
		s.uiError(w, r, err)
		return
	}
	p := crashPage{Report: rep, Crashing: rep.CrashingGoroutineReport()}
	for _, g := range rep.Goroutines {
		if p.Crashing != nil && g.ID == p.Crashing.ID {
			continue
		}
		if len(p.Others) == maxUIGoroutines {
			p.Hidden++
			continue
		}
		p.Others = append(p.Others, g)
	}
	s.render(w, r, http.StatusOK, s.pages.crash, p)
}

func (s *Server) loadReport(r *http.Request, id string) (*corepipe.Report, error) {
	rc, err := s.openReport(r.Context(), id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var rep corepipe.Report
	if err := json.NewDecoder(rc).Decode(&rep); err != nil {
		return nil, fmt.Errorf("crash %s: decode report: %w", id, err)
	}
	return &rep, nil
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

// render executes into a buffer first, so that a template failure becomes a
// 500 rather than half a page under a 200.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		_, msg := s.errorMessage(r, fmt.Errorf("render %s: %w", t.Name(), err))
		http.Error(w, msg, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	buf.WriteTo(w)
}
