// Package api serves the crash index over HTTP: the JSON API that the CLI and
// other tools use, artifact downloads, the server-rendered web UI, bearer
// token auth and Prometheus metrics. It reads through the Index and
// corepipe.BlobStore seams only, so it runs the same against SQLite and a
// filesystem store in `corepipe dev` as against the production adapters.
package api

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/corepipe/corepipe"
)

// Index is what the server reads: crashes and their groups (sqlite.Index
// is one). The server never writes the index, so nothing here asks for
// corepipe.Index's Upsert: a read-only view or replica serves as well.
type Index interface {
	// Crashes lists summaries newest first, and the cursor of the next page
	// ("" when there is none).
	Crashes(ctx context.Context, f corepipe.CrashFilter) ([]*corepipe.Report, string, error)
	// Crash returns the summary of one crash, corepipe.ErrNotFound when
	// unknown.
	Crash(ctx context.Context, id string) (*corepipe.Report, error)
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
	// request may do everything, so listen on loopback only (see Listen),
	// and only loopback host names are answered (against DNS rebinding).
	Tokens *Tokens
	// Web is how browsers and an authenticating proxy reach the server.
	Web
	// Now is the clock of sessions and auth-file reloads; nil is time.Now.
	Now func() time.Time
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
	// MaxSymbolSize bounds an uploaded debug file (0:
	// symbols.DefaultMaxSize).
	MaxSymbolSize int64
	// CoreRequests asks nodes for the cores they keep; nil answers core
	// requests with 503.
	CoreRequests CoreRequester
	// Republisher queues kept crashes for the analyzers again
	// (POST /api/v1/reanalyze); nil turns re-analysis off.
	Republisher Republisher
}

// Web is how people reach the server through a browser, and how far an
// authenticating proxy in front of it is believed.
type Web struct {
	// PublicURL is where people reach the server (https://crashes.example.com)
	// when it is behind a proxy: an https URL makes cookies Secure, and its
	// host is an origin forms may come from.
	PublicURL string
	// TrustedProxies are the addresses of an authenticating proxy whose
	// identity headers (X-Forwarded-User, -Email, -Groups) and
	// X-Forwarded-Proto are believed; GroupRoles maps its groups to roles
	// ("*": everyone it signed in). Both need Tokens (auth on).
	TrustedProxies []netip.Prefix
	GroupRoles     map[string]Role
	// SessionTTL is how long a browser stays signed in; 0 is
	// DefaultSessionTTL.
	SessionTTL time.Duration
	// SourceLinks link the crash page's frames to their source; nil links
	// only GitHub, GitLab and Codeberg modules.
	SourceLinks *corepipe.SourceLinks
	// IssueTemplate is the URL of a tracker's new-issue form, with
	// {title}, {body} and {signature}: a group page's "Create issue" link.
	// "" shows none.
	IssueTemplate string
}

// ParseWeb reads the web settings as flags spell them: a public URL,
// comma-separated trusted proxy prefixes, GROUP=ROLE pairs and a session
// lifetime.
func ParseWeb(publicURL, trustedProxies, groupRoles string, sessionTTL time.Duration) (Web, error) {
	w := Web{PublicURL: publicURL, SessionTTL: sessionTTL}
	_, err := parsePublicURL(publicURL)
	if err != nil {
		return Web{}, err
	}
	if w.TrustedProxies, err = ParseTrustedProxies(trustedProxies); err != nil {
		return Web{}, err
	}
	if w.GroupRoles, err = ParseGroupRoles(groupRoles); err != nil {
		return Web{}, err
	}
	if len(w.GroupRoles) > 0 && len(w.TrustedProxies) == 0 {
		return Web{}, fmt.Errorf("%w: proxy group roles without trusted proxies: no proxy's groups would be believed", corepipe.ErrInvalid)
	}
	return w, nil
}

func parsePublicURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: public URL %q: want http(s)://host[:port]", corepipe.ErrInvalid, corepipe.Clip(s, 64))
	}
	return u, nil
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

	maxSymbolSize int64
	requests      CoreRequester
	republish     Republisher

	publicURL  *url.URL
	proxies    []netip.Prefix
	groupRoles map[string]Role
	sessions   *sessions
	sessionTTL time.Duration
	csrfKey    [32]byte
	now        func() time.Time

	// sourceLinks may be nil: SourceLinks.Link handles it.
	sourceLinks   *corepipe.SourceLinks
	issueTemplate string
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
		pages:   parsePages(),

		maxSymbolSize: cfg.MaxSymbolSize,
		requests:      cfg.CoreRequests,
		republish:     cfg.Republisher,

		proxies:    cfg.TrustedProxies,
		groupRoles: cfg.GroupRoles,
		sessions:   newSessions(),
		sessionTTL: cfg.SessionTTL,
		now:        cfg.Now,

		sourceLinks:   cfg.SourceLinks,
		issueTemplate: cfg.IssueTemplate,
	}
	if err := checkIssueTemplate(cfg.IssueTemplate); err != nil {
		return nil, err
	}
	var err error
	if s.publicURL, err = parsePublicURL(cfg.PublicURL); err != nil {
		return nil, err
	}
	if len(cfg.TrustedProxies) > 0 && cfg.Tokens == nil {
		return nil, fmt.Errorf("%w: trusted proxies need an auth file: without one, auth is off", corepipe.ErrInvalid)
	}
	switch {
	case s.sessionTTL < 0:
		return nil, fmt.Errorf("%w: session lifetime %v: want a positive duration", corepipe.ErrInvalid, s.sessionTTL)
	case s.sessionTTL == 0:
		s.sessionTTL = DefaultSessionTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	rand.Read(s.csrfKey[:])
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
	api := func(pattern string, need Role, h handler) {
		mux.Handle("GET "+pattern, s.guard(need, false, h))
		// Any other method on a known path is a JSON 405, not the mux's
		// text one.
		mux.HandleFunc(pattern, s.methodNotAllowed)
	}
	ui := func(pattern string, need Role, h handler) {
		mux.Handle("GET "+pattern, s.guard(need, true, h))
	}

	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.gather != nil {
		metrics := promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)})
		mux.Handle("GET /metrics", s.guard(RoleViewer, false, func(w http.ResponseWriter, r *http.Request) error {
			metrics.ServeHTTP(w, r)
			return nil
		}))
	}

	api("/api/v1/crashes", RoleViewer, s.listCrashes)
	api("/api/v1/crashes/{id}", RoleViewer, s.getCrash)
	api("/api/v1/crashes/{id}/goroutines", RoleViewer, s.getGoroutines)
	api("/api/v1/crashes/{id}/core", RoleDebugger, s.getCore)
	api("/api/v1/crashes/{id}/executable", RoleDebugger, s.getExecutable)
	api("/api/v1/crashes/{id}/console", RoleDebugger, s.getConsole)
	api("/api/v1/groups", RoleViewer, s.listGroups)
	api("/api/v1/releases", RoleViewer, s.listReleases)
	api("/api/v1/groups/{signature...}", RoleViewer, s.getGroup)
	s.symbolRoutes(mux, api)
	mux.Handle("PATCH /api/v1/groups/{signature...}", s.guard(RoleTriage, false, s.patchGroup))
	mux.Handle("POST /api/v1/reanalyze", s.guard(RoleTriage, false, s.postReanalyze))
	mux.Handle("POST /api/v1/crashes/{id}/core/request", s.guard(RoleDebugger, false, s.requestCore))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%w: no API route %s", corepipe.ErrNotFound, corepipe.Clip(r.URL.Path, 64)))
	})

	ui("/{$}", RoleViewer, s.uiList)
	ui("/crashes/{id}", RoleViewer, s.uiCrash)
	ui("/groups", RoleViewer, s.uiGroups)
	ui("/releases", RoleViewer, s.uiReleases)
	ui("/groups/{signature...}", RoleViewer, s.uiGroup)
	mux.Handle("POST /groups/{signature...}", s.guard(RoleTriage, true, s.uiTriage))
	mux.Handle("POST /crashes/{id}/core/request", s.guard(RoleDebugger, true, s.uiRequestCore))
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler()))
	mux.HandleFunc("/", s.uiNotFound)
	return securityHeaders(s.checkHost(limitBody(s.metrics.instrument(mux))))
}

// maxBody bounds every request body but a symbol upload's, which the
// symbol store bounds; the largest other the server reads is a sign-in
// form (maxFormBody).
const maxBody = 64 << 10

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !symbolUpload(r) {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		next.ServeHTTP(w, r)
	})
}

// checkHost answers, with auth off, only requests naming this machine's
// loopback: otherwise a web page on any site could point a DNS name at
// 127.0.0.1 and read cores from `corepipe dev` through the visitor's
// browser. With auth on, such a page has no credentials to send.
func (s *Server) checkHost(next http.Handler) http.Handler {
	if s.tokens != nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			writeJSON(w, http.StatusMisdirectedRequest, errorBody{"without an auth file this server answers only to localhost, 127.0.0.1 or [::1], not " + corepipe.Clip(r.Host, 64)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// Timeouts of the HTTP server. Downloads stream for as long as they make
// progress: stream extends the write deadline chunk by chunk.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// NewHTTPServer is the http.Server to run h with: a client that sends its
// request slowly, or stops reading a response, holds a connection no longer
// than these timeouts.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

// handler is the code of a guarded route. The error it returns, before it
// has written anything, is answered by the guard: as JSON on the API and as
// the error page in the UI, so no route renders its own errors or can go on
// after one.
type handler func(w http.ResponseWriter, r *http.Request) error

// guard runs h when the request may do what needs role, with the
// requester's identity in its context. The UI answers a request without a
// valid credential with the login form, the API with JSON.
func (s *Server) guard(need Role, ui bool, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := s.authorize(r, need)
		if err != nil {
			s.fail(w, r, ui, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
		if err := h(w, r); err != nil {
			s.fail(w, r, ui, err)
		}
	})
}

// fail answers err: in the UI as the login form for a missing credential,
// else as the error page; on the API as JSON, with the scheme to
// authenticate by when the credential is what is missing.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ui bool, err error) {
	unauthorized := errorStatus(err) == http.StatusUnauthorized
	switch {
	case ui && unauthorized:
		s.renderLogin(w, r, http.StatusUnauthorized, r.URL.RequestURI(), err)
	case ui:
		s.uiError(w, r, err)
	default:
		if unauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="corepipe"`)
		}
		s.writeError(w, r, err)
	}
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{fmt.Sprintf("method %s not allowed: this route is read-only (GET)", corepipe.Clip(r.Method, 64))})
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
