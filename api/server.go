// Package api serves the crash index over HTTP: the JSON API that the CLI and
// other tools use, artifact downloads, the server-rendered web UI, bearer
// token auth and Prometheus metrics. It reads through the Index and
// corepipe.BlobStore seams only, so it runs the same against SQLite and a
// filesystem store in `corepipe dev` as against the production adapters.
package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/corepipe/corepipe"
)

// Index is what the server reads: crashes and their groups (sqlite.Index
// is one).
type Index interface {
	corepipe.Index
	Groups(ctx context.Context, f corepipe.GroupFilter) ([]*corepipe.Group, string, error)
	Group(ctx context.Context, signature string) (*corepipe.Group, error)
	Versions(ctx context.Context, signature string) ([]corepipe.Share, error)
	Workloads(ctx context.Context, signature string) ([]corepipe.Share, error)
	Occurrences(ctx context.Context, signature string, from time.Time, step time.Duration, n int) ([]int64, error)
}

// Config is what a Server needs.
type Config struct {
	Index Index
	Blobs corepipe.BlobStore
	// Tokens are the accepted bearer tokens. Nil turns auth off: every
	// request may do everything, so listen on loopback only (see Listen).
	Tokens *Tokens
	// Logger receives request failures; nil discards them.
	Logger *slog.Logger
	// Ready reports whether the index has caught up with the stored reports;
	// /readyz answers 503 until it does. Nil means always ready.
	Ready func() bool
	// Pending is how many reports of the stream the index has not taken in
	// yet, for the lag metric. Nil leaves the metric out.
	Pending func(context.Context) (uint64, error)
	// Registerer receives the server's metrics and Gatherer is what /metrics
	// serves: usually one registry for the whole process. A nil Gatherer
	// serves no /metrics.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
}

// Server is the HTTP front-end. Its handler is safe for concurrent use.
type Server struct {
	index   Index
	blobs   corepipe.BlobStore
	tokens  *Tokens
	log     *slog.Logger
	ready   func() bool
	pending func(context.Context) (uint64, error)
	metrics *httpMetrics
	gather  prometheus.Gatherer
	pages   pages
}

// New builds a Server and registers its metrics. It parses the UI
// templates, which are embedded, so a broken template is a programming error
// and panics here rather than on the first request.
func New(cfg Config) (*Server, error) {
	s := &Server{
		index:   cfg.Index,
		blobs:   cfg.Blobs,
		tokens:  cfg.Tokens,
		log:     cfg.Logger,
		ready:   cfg.Ready,
		pending: cfg.Pending,
		gather:  cfg.Gatherer,
		pages:   parsePages(cfg.Tokens != nil),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.ready == nil {
		s.ready = func() bool { return true }
	}
	m, err := newHTTPMetrics(cfg.Registerer, s)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.metrics = m
	return s, nil
}

// Handler returns the routes of the API and the UI, each behind the role it
// needs.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern string, need Role, h http.HandlerFunc) {
		mux.Handle("GET "+pattern, s.guard(need, false, h))
		// Any other method on a known path is a JSON 405, not the mux's
		// text one.
		mux.HandleFunc(pattern, s.methodNotAllowed)
	}
	ui := func(pattern string, need Role, h http.HandlerFunc) {
		mux.Handle("GET "+pattern, s.guard(need, true, h))
	}

	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.gather != nil {
		mux.Handle("GET /metrics", s.guard(RoleViewer, false,
			promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}).ServeHTTP))
	}

	api("/api/v1/crashes", RoleViewer, s.listCrashes)
	api("/api/v1/crashes/{id}", RoleViewer, s.getCrash)
	api("/api/v1/crashes/{id}/core", RoleDebugger, s.getCore)
	api("/api/v1/crashes/{id}/executable", RoleDebugger, s.getExecutable)
	api("/api/v1/groups", RoleViewer, s.listGroups)
	api("/api/v1/groups/{signature...}", RoleViewer, s.getGroup)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%w: no API route %s", corepipe.ErrNotFound, truncate(r.URL.Path)))
	})

	ui("/{$}", RoleViewer, s.uiList)
	ui("/crashes/{id}", RoleViewer, s.uiCrash)
	ui("/groups", RoleViewer, s.uiGroups)
	ui("/groups/{signature...}", RoleViewer, s.uiGroup)
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler()))
	mux.HandleFunc("/", s.uiNotFound)
	return securityHeaders(s.metrics.instrument(mux))
}

// guard runs h when the request may do what needs role. The UI answers a
// request without a valid token with the login form, the API with JSON.
func (s *Server) guard(need Role, ui bool, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r, need); err != nil {
			switch {
			case ui && errorStatus(err) == http.StatusUnauthorized:
				s.renderLogin(w, r, http.StatusUnauthorized, r.URL.RequestURI(), err)
			case ui:
				s.uiError(w, r, err)
			default:
				if errorStatus(err) == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="corepipe"`)
				}
				s.writeError(w, r, err)
			}
			return
		}
		h(w, r)
	})
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{fmt.Sprintf("method %s not allowed: this route is read-only (GET)", truncate(r.Method))})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready() {
		s.writeError(w, r, errNotReady)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// securityHeaders applies to every response: crash text is written by
// whatever crashed, so the browser must never sniff a download into HTML or
// run a script that slipped through escaping.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}
