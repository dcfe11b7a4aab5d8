// Package api serves the crash index over HTTP: the JSON API that the CLI and
// other tools use, artifact downloads, and the server-rendered web UI. It
// reads through the corepipe.Index and corepipe.BlobStore seams only, so it
// runs the same against SQLite and a filesystem store in `corepipe dev` as
// against the production adapters.
package api

import (
	"io"
	"log/slog"
	"net/http"

	"github.com/corepipe/corepipe"
)

// Config is what a Server needs.
type Config struct {
	Index corepipe.Index
	Blobs corepipe.BlobStore
	// Logger receives request failures; nil discards them.
	Logger *slog.Logger
	// Ready reports whether the index has caught up with the stored reports;
	// /readyz answers 503 until it does. Nil means always ready.
	Ready func() bool
}

// Server is the HTTP front-end. Its handler is safe for concurrent use.
type Server struct {
	index corepipe.Index
	blobs corepipe.BlobStore
	log   *slog.Logger
	ready func() bool
	pages pages
}

// New builds a Server. It parses the UI templates, which are embedded, so a
// broken template is a programming error and panics here rather than on the
// first request.
func New(cfg Config) *Server {
	s := &Server{
		index: cfg.Index,
		blobs: cfg.Blobs,
		log:   cfg.Logger,
		ready: cfg.Ready,
		pages: parsePages(),
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.ready == nil {
		s.ready = func() bool { return true }
	}
	return s
}

// Handler returns the routes of the API and the UI.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)

	mux.HandleFunc("GET /api/v1/crashes", s.listCrashes)
	mux.HandleFunc("GET /api/v1/crashes/{id}", s.getCrash)
	mux.HandleFunc("GET /api/v1/crashes/{id}/core", s.getCore)
	mux.HandleFunc("GET /api/v1/crashes/{id}/executable", s.getExecutable)

	mux.HandleFunc("GET /{$}", s.uiList)
	mux.HandleFunc("GET /crashes/{id}", s.uiCrash)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler()))
	return securityHeaders(mux)
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
