package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/api"
	"github.com/corepipe/corepipe/collector"
	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/index"
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
func collectorFlagsOf(fset *flag.FlagSet, ignoreRlimit bool) *collector.Settings {
	s := &collector.Settings{}
	fset.Int64Var(&s.MaxCoreSize, "max-core-size", 0, "keep at most this many bytes of each core (0: no limit)")
	fset.Int64Var(&s.MaxUse, "max-use", 0, "bytes the spool may hold before cores are dropped (0: no limit)")
	fset.Int64Var(&s.KeepFree, "keep-free", 0, "bytes to keep free on the spool's filesystem (0: no limit)")
	fset.BoolVar(&s.IgnoreRlimitCore, "ignore-rlimit-core", ignoreRlimit, "keep cores of processes whose RLIMIT_CORE is 0")
	return s
}

// installHandler points the kernel's core_pattern at the collector and
// returns the function that puts the previous settings back.
func installHandler(log *slog.Logger, collectorPath, spool, stateFile string, force bool, limits collector.Settings) (func(), error) {
	collectorPath, err := filepath.Abs(collectorPath)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(collectorPath); err != nil || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("collector %s is not an executable file (build it with make build, or pass --collector)", collectorPath)
	}
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	spool, err = filepath.Abs(spool)
	if err != nil {
		return nil, err
	}
	if err := limits.Save(spool); err != nil {
		return nil, err
	}
	h := corepattern.Handler{StateFile: stateFile, Force: force}
	want := corepattern.Settings{Pattern: corepattern.Pattern(collectorPath, spool), PipeLimit: pipeLimit}
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

func newAgent(log *slog.Logger, spool string, blobs corepipe.BlobStore, q agent.Publisher) (*agent.Agent, error) {
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return agent.New(agent.Config{
		Spool:  collector.Spool{Dir: spool},
		Blobs:  blobs,
		Queue:  q,
		Logger: log.With("part", "agent"),
	}), nil
}

type analyzerFlags struct {
	workers   int
	maxMemory uint64
	attempts  int
	timeout   time.Duration
}

func newAnalyzer(log *slog.Logger, f analyzerFlags, blobs corepipe.BlobStore, q analyzer.Queue) (*analyzer.Analyzer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for analysis children: %w", err)
	}
	return analyzer.New(analyzer.Config{
		Blobs: blobs,
		Queue: q,
		Inspector: analyzer.Child{
			Command:   []string{self, "analyze"},
			MaxMemory: f.maxMemory,
			Timeout:   f.timeout,
		},
		Workers:    f.workers,
		MaxDeliver: f.attempts,
		Logger:     log.With("part", "analyzer"),
	}), nil
}

// reportsQueue is what the API needs of the queue: the reports stream.
type reportsQueue interface {
	Reports(ctx context.Context, durable string) (corepipe.Consumer, error)
}

// apiPart feeds the index from the reports stream and serves HTTP on ln.
func apiPart(log *slog.Logger, ln net.Listener, idx corepipe.Index, blobs corepipe.BlobStore, q reportsQueue, durable string) func(context.Context) error {
	return func(ctx context.Context) error {
		cons, err := q.Reports(ctx, durable)
		if err != nil {
			return fmt.Errorf("api: %w", err)
		}
		follower := &index.Follower{Consumer: cons, Index: idx, Logger: log.With("part", "index")}
		srv := api.New(api.Config{
			Index:  idx,
			Blobs:  blobs,
			Logger: log.With("part", "api"),
			Ready:  func() bool { return true },
		})
		return runAll(ctx, follower.Run, func(ctx context.Context) error {
			return serve(ctx, ln, srv.Handler())
		})
	}
}

// listen opens addr. Without authentication the API may only be reachable
// from this machine: cores hold secrets.
func listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("--listen %q: without --auth-file the API listens only on loopback (127.0.0.1, ::1, localhost)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
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
