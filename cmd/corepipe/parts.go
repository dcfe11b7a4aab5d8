package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/api"
	"github.com/corepipe/corepipe/collector"
	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/index"
	"github.com/corepipe/corepipe/internal/size"
	natsq "github.com/corepipe/corepipe/queue/nats"
	"github.com/corepipe/corepipe/sqlite"
	"github.com/corepipe/corepipe/symbols"
)

// pipeLimit is how many crashes the kernel hands to collectors at once; the
// kernel waits for each collector so that it can read /proc of the dying
// process, and skips dumps beyond the limit.
const pipeLimit = 64

// defaultCollector is the collector installed next to this binary.
func defaultCollector() string {
	exe, err := os.Executable()
	if err != nil {
		return "corepipe-collector"
	}
	return filepath.Join(filepath.Dir(exe), corepattern.Marker)
}

// collectorFlagsOf declares the collector's limits; the agent hands them to
// the collector through the spool.
func collectorFlagsOf(fset *pflag.FlagSet, ignoreRlimit bool) *spool.Settings {
	s := &spool.Settings{}
	fset.Var((*size.Value)(&s.MaxCoreSize), "max-core-size", "keep at most this much of each core (0: no limit)")
	fset.Var((*size.Value)(&s.MaxUse), "max-use", "how much the spool may hold before cores are dropped (0: no limit)")
	fset.Var((*size.Value)(&s.KeepFree), "keep-free", "how much to keep free on the spool's filesystem (0: no limit)")
	fset.BoolVar(&s.IgnoreRlimitCore, "ignore-rlimit-core", ignoreRlimit, "keep cores of processes whose RLIMIT_CORE is 0")
	fset.IntVar(&s.RateLimit, "rate-limit", 10, "keep the cores of only this many crashes of one executable per --rate-window; later ones keep their manifest (0: no limit)")
	fset.DurationVar(&s.RateWindow, "rate-window", collector.DefaultRateWindow, "the window of --rate-limit")
	fset.Var((*size.Value)(&s.MaxExecutableSize), "max-executable-size", "copy no executable larger than this (0: 2G)")
	fset.IntVar(&s.MaxCollectors, "max-collectors", collector.DefaultMaxCollectors, "how many collectors may store a core at once; the others keep the manifest only (below core_pipe_limit, 64)")
	return s
}

// installHandler points the kernel's core_pattern at the collector and
// returns the function that puts the previous settings back.
func installHandler(log *slog.Logger, collectorPath, spoolDir, stateFile string, force bool, limits spool.Settings) (func(), error) {
	collectorPath, err := filepath.Abs(collectorPath)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(collectorPath); err != nil || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("collector %s is not an executable file (build it with make build, or pass --collector)", collectorPath)
	}
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	spoolDir, err = filepath.Abs(spoolDir)
	if err != nil {
		return nil, err
	}
	if err := limits.Save(spoolDir); err != nil {
		return nil, err
	}
	g := handlerGuard(collectorPath, spoolDir, stateFile, force)
	h, want := g.Handler, g.Want
	if err := h.Install(want); err != nil {
		return nil, fmt.Errorf("install crash handler: %w", err)
	}
	log.Info("crash handler installed", "core_pattern", want.Pattern)
	return func() {
		if err := h.Restore(); err != nil {
			log.Error("restore core_pattern", "err", err)
			return
		}
		log.Info("core_pattern restored")
	}, nil
}

func newAgent(log *slog.Logger, spoolDir string, blobs corepipe.BlobStore, q agent.Publisher, opts ...func(*agent.Config)) (*agent.Agent, error) {
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	cfg := agent.Config{
		Spool:  spool.Spool{Dir: spoolDir},
		Blobs:  blobs,
		Queue:  q,
		Logger: log.With("part", "agent"),
	}
	for _, o := range opts {
		o(&cfg)
	}
	return agent.New(cfg), nil
}

// nodeAgent builds the agent of a node with its pod watcher and core policy,
// and returns the parts that run them: the agent, the watcher, the collection
// of crash-output files and the answers to core requests.
func nodeAgent(log *slog.Logger, spoolDir string, blobs corepipe.BlobStore, q *natsq.Queue, kf *kubeFlags, pf *corePolicyFlags, crashOutput string, opts ...func(*agent.Config)) ([]func(context.Context) error, error) {
	pods, err := kf.watcher(log, blobs)
	if err != nil {
		return nil, err
	}
	policy, err := pf.policy(q)
	if err != nil {
		return nil, err
	}
	ag, err := newAgent(log, spoolDir, blobs, q, append(opts, withWatcher(pods), withPolicy(policy))...)
	if err != nil {
		return nil, err
	}
	return []func(context.Context) error{ag.Run, runWatcher(pods, ag), crashOutputs(log, crashOutput, kf.node, blobs, ag, pods), coreRequests(log, q, policy, kf.node, ag)}, nil
}

type analyzerFlags struct {
	workers   int
	maxMemory int64
	maxCore   int64
	attempts  int
	timeout   time.Duration
	// The external debuginfod servers, and the bounds and cache of their
	// answers.
	debuginfod          []string
	debuginfodTimeout   time.Duration
	debuginfodMaxSize   int64
	debuginfodCache     string
	debuginfodCacheSize int64
}

func newAnalyzer(log *slog.Logger, f analyzerFlags, blobs corepipe.BlobStore, q analyzer.Queue, reg prometheus.Registerer) (*analyzer.Analyzer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for analysis children: %w", err)
	}
	var debuginfod *analyzer.Debuginfod
	urls, err := analyzer.ParseDebuginfodURLs(f.debuginfod, os.Getenv("DEBUGINFOD_URLS"))
	if err != nil {
		return nil, fmt.Errorf("--debuginfod: %w", err)
	}
	if len(urls) > 0 {
		cache := f.debuginfodCache
		if cache == "" {
			cache = filepath.Join(os.TempDir(), "corepipe-debuginfod")
		}
		debuginfod = &analyzer.Debuginfod{URLs: urls, Timeout: f.debuginfodTimeout, MaxSize: f.debuginfodMaxSize,
			CacheDir: cache, CacheSize: f.debuginfodCacheSize, Logger: log.With("part", "analyzer")}
		log.Info("debug files the symbol store lacks are asked of debuginfod", "servers", strings.Join(urls, " "), "cache", cache)
	}
	return analyzer.New(analyzer.Config{
		Blobs: blobs,
		Queue: q,
		Inspector: analyzer.Child{
			Command:   []string{self, "analyze"},
			MaxMemory: uint64(f.maxMemory),
			// One core's worth of the wall time: a child spinning on
			// every CPU is stopped long before its timeout.
			MaxCPU:    f.timeout,
			MaxReport: analyzer.DefaultMaxReport,
			Timeout:   f.timeout,
		},
		MaxCoreSize: f.maxCore,
		Debuginfod:  debuginfod,
		Workers:     f.workers,
		MaxDeliver:  f.attempts,
		Registerer:  reg,
		Logger:      log.With("part", "analyzer"),
	}), nil
}

// debuginfodURLs is the repeatable --debuginfod: each server is checked
// as it is given, so a bad one is a usage error before anything starts.
// One value may list several, space-separated, as DEBUGINFOD_URLS does.
type debuginfodURLs []string

func (u *debuginfodURLs) String() string { return strings.Join(*u, " ") }
func (u *debuginfodURLs) Type() string   { return "URL" }

func (u *debuginfodURLs) Set(s string) error {
	urls, err := analyzer.ParseDebuginfodURLs(strings.Fields(s), "")
	if err != nil || len(urls) == 0 {
		return errors.New("want http(s)://host[:port][/path]")
	}
	*u = append(*u, urls...)
	return nil
}

// reportsQueue is what the API needs of the queue: the reports stream,
// the nodes' core requests, and the analyzers' work queue for
// re-analyses.
type reportsQueue interface {
	Reports(ctx context.Context, durable string) (corepipe.Consumer, error)
	RequestCore(ctx context.Context, node, id string) error
	RepublishCrash(ctx context.Context, c *corepipe.Crash, why string) error
}

// apiFlags are the api's flags, shared by `corepipe api` and `corepipe dev`.
type apiFlags struct {
	authFile string
	// The web settings: see api.Web and the README's single sign-on.
	publicURL, trustedProxies, proxyGroupRoles string
	sessionTTL                                 time.Duration
	web                                        api.Web
	sourceLinks                                []string
	ownersFile                                 string
	maxSymbolSize                              int64
	issueTemplate                              string
	// owners are the rules read from ownersFile by tokens; nil without.
	owners *corepipe.OwnerRules
	retain *retentionFlags
}

func apiFlagsOf(fset *pflag.FlagSet) *apiFlags {
	f := &apiFlags{}
	fset.StringVar(&f.authFile, "auth-file", "", `bearer tokens, one "TOKEN ROLE [NAME]" per line (roles viewer, triage, debugger, admin; NAME is who group histories say changed them); without it the API listens on loopback only`)
	fset.StringVar(&f.publicURL, "public-url", "", "where people reach the UI, e.g. https://crashes.example.com behind a TLS proxy (https makes cookies Secure)")
	fset.StringVar(&f.trustedProxies, "trusted-proxies", "", "addresses or CIDRs of an authenticating proxy (oauth2-proxy) whose X-Forwarded-User/-Email/-Groups/-Proto are believed; needs --auth-file")
	fset.StringVar(&f.proxyGroupRoles, "proxy-group-roles", "", "GROUP=ROLE,… for users the trusted proxy signs in (* = any user), e.g. sre=admin,dev=debugger,*=viewer")
	fset.DurationVar(&f.sessionTTL, "session-ttl", api.DefaultSessionTTL, "how long a browser stays signed in")
	fset.StringVar(&f.issueTemplate, "issue-template", "", "`URL` of a tracker's new-issue form with {title}, {body} and {signature}, for a group page's \"Create issue\" link, e.g. 'https://github.com/acme/shop/issues/new?title={title}&body={body}'")
	f.maxSymbolSize = symbols.DefaultMaxSize
	fset.Var((*size.Value)(&f.maxSymbolSize), "max-symbol-size", "largest debug file the API takes from corepipe symbols upload")
	fset.StringVar(&f.ownersFile, "owners", "", "`file` of \"PATTERN OWNER\" rules that assign crash groups nobody assigned, like CODEOWNERS (see the README)")
	f.retain = retentionFlagsOf(fset)
	fset.StringArrayVar(&f.sourceLinks, "source-link", nil, "link frames of modules under PREFIX to their source: PREFIX=URL with {repo}, {path}, {rev} and {line}, e.g. 'git.acme.com/=https://git.acme.com/{repo}/src/{rev}/{path}#L{line}' (repeatable; GitHub, GitLab and Codeberg need none)")
	return f
}

// tokens loads the auth file, nil without one, and checks the web
// settings that go with it into f.web.
func (f *apiFlags) tokens() (*api.Tokens, error) {
	web, err := api.ParseWeb(f.publicURL, f.trustedProxies, f.proxyGroupRoles, f.sessionTTL)
	if err != nil {
		return nil, err
	}
	if web.SourceLinks, err = corepipe.ParseSourceLinks(f.sourceLinks); err != nil {
		return nil, err
	}
	web.IssueTemplate = f.issueTemplate
	if f.ownersFile != "" {
		if f.owners, err = parseFile("--owners", f.ownersFile, corepipe.ParseOwners); err != nil {
			return nil, err
		}
	}
	f.web = web
	if f.authFile == "" {
		if len(web.TrustedProxies) > 0 {
			return nil, fmt.Errorf("--trusted-proxies needs --auth-file: without one, auth is off")
		}
		return nil, nil
	}
	return api.LoadTokens(f.authFile)
}

// apiSetup is how the API part runs.
type apiSetup struct {
	tokens *api.Tokens
	web    api.Web
	// rebuild refills the index from the blob store before following the
	// stream.
	rebuild bool
	metrics *prometheus.Registry
	// owners assign the groups nobody assigned; nil assigns none.
	owners *corepipe.OwnerRules
	// maxSymbolSize bounds a debug file upload.
	maxSymbolSize int64
	// retain expires cores and reports; nil keeps them forever.
	retain *retentionFlags
}

// apiPart feeds the index from the reports stream and serves HTTP on ln.
// /readyz answers 200 once the index has caught up with the stream.
func apiPart(log *slog.Logger, ln net.Listener, idx *sqlite.Index, blobs corepipe.BlobStore, q reportsQueue, durable string, setup apiSetup) func(context.Context) error {
	return func(ctx context.Context) error {
		cons, err := q.Reports(ctx, durable)
		if err != nil {
			return fmt.Errorf("api: %w", err)
		}
		idx.SetOwners(setup.owners)
		ilog := log.With("part", "index")
		follower := &index.Follower{Consumer: cons, Index: idx, Logger: ilog}
		srv, err := api.New(api.Config{
			Index:      idx,
			Blobs:      blobs,
			Tokens:     setup.tokens,
			Web:        setup.web,
			Logger:     log.With("part", "api"),
			Ready:      follower.Ready,
			Pending:    follower.Pending,
			Registerer: setup.metrics,
			Gatherer:   setup.metrics,

			MaxSymbolSize: setup.maxSymbolSize,
			CoreRequests:  q,
			Republisher:   q,
		})
		if err != nil {
			return err
		}
		sweep, err := sweeperPart(log, idx, blobs, q, setup.retain)
		if err != nil {
			return err
		}
		feed := follower.Run
		// The sweeper starts once the index is whole: a sweep racing a
		// rebuild could delete a core the rebuild just read as stored.
		rebuilt := make(chan struct{})
		if !setup.rebuild {
			close(rebuilt)
		} else {
			feed = func(ctx context.Context) error {
				ilog.Info("rebuilding the index from the blob store")
				st, err := index.Rebuild(ctx, blobs, idx, ilog)
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					return err
				}
				ilog.Info("index rebuilt from the blob store", "reports", st.Indexed, "skipped", st.Skipped)
				close(rebuilt)
				return follower.Run(ctx)
			}
		}
		parts := []func(context.Context) error{feed, func(ctx context.Context) error {
			return serve(ctx, ln, srv.Handler())
		}}
		if sweep != nil {
			parts = append(parts, func(ctx context.Context) error {
				select {
				case <-rebuilt:
					return sweep(ctx)
				case <-ctx.Done():
					return nil
				}
			})
		}
		return runAll(ctx, parts...)
	}
}

func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := api.NewHTTPServer(h)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// runAll runs parts until ctx is done or one of them fails, which stops the
// others; it returns the first failure.
func runAll(ctx context.Context, parts ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, p := range parts {
		wg.Go(func() {
			if err := p(ctx); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	return first
}

// parseFile reads the file at path, given as flag, with parse.
func parseFile[T any](flag, path string, parse func(io.Reader) (T, error)) (T, error) {
	file, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", flag, err)
	}
	defer file.Close()
	v, err := parse(file)
	if err != nil {
		return v, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return v, nil
}
