// Command corepipe-collector is the kernel's core_pattern pipe handler. The
// kernel runs it once per crash as
//
//	corepipe-collector -spool DIR %P %i %I %s %t %c %u %g %d %p %F
//
// with the core on stdin; it writes one spool entry for the node agent (see
// package collector). The kernel discards its output, so besides stderr each
// run leaves one line in DIR/collector.log: the entry it committed, or why
// it could not.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/size"
)

// maxLogSize caps collector.log; one older generation is kept beside it.
const maxLogSize = 1 << 20

// memoryLimit is where the collector's heap is collected instead of at
// GOGC's doublings. Its buffers are allocated at once and then streamed
// through with little garbage, so the default's cycles all come while
// they are first allocated, 4 MB to 15 MB, and only delay the dying
// process (a small core's hold by a fifth). Its live heap is about 10 MB.
const memoryLimit = 32 << 20

func main() { os.Exit(run(os.Args[1:])) }

// run exits 0 whenever an entry was committed: the kernel does nothing with
// the status, and a non-zero one would only say that nothing was saved.
func run(argv []string) int {
	start := time.Now()
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(memoryLimit)
	flags := flag.NewFlagSet("corepipe-collector", flag.ContinueOnError)
	spoolDir := flags.String("spool", "", "spool `directory` the node agent reads")
	maxCore := flags.String("max-core-size", "0", "keep at most this many raw core bytes, a size like 512M or 2G (0: no limit)")
	maxUse := flags.String("max-use", "0", "size the whole spool may hold (0: no limit)")
	keepFree := flags.String("keep-free", "0", "size to keep free on the spool's filesystem")
	envAllow := flags.String("env-allow", "", "comma-separated environment variables to keep (default "+strings.Join(collector.DefaultEnvAllowlist, ",")+")")
	rateLimit := flags.Int("rate-limit", 0, "keep the cores of only this many crashes of one executable per -rate-window (0: no limit)")
	rateWindow := flags.Duration("rate-window", collector.DefaultRateWindow, "the window of -rate-limit")
	timeout := flags.Duration("timeout", 5*time.Minute, "give up reading the core after this long and keep what was read")
	if err := flags.Parse(argv); err != nil {
		return 2
	}
	stderr := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var warnings []string
	sizeOf := func(name, s string) int64 {
		n, err := size.Parse(s)
		if err != nil {
			// A bad limit must not cost the crash: capture without it.
			warnings = append(warnings, fmt.Sprintf("-%s ignored: %v", name, err))
		}
		return n
	}
	cfg := collector.Config{SpoolDir: *spoolDir, Logger: stderr}
	// The agent's settings in the spool first, then what the command line
	// says explicitly.
	if s, err := spool.LoadSettings(*spoolDir); err != nil {
		warnings = append(warnings, fmt.Sprintf("settings ignored: %v", err))
	} else {
		cfg.Apply(s)
	}
	flags.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "max-core-size":
			cfg.MaxCoreSize = sizeOf(f.Name, *maxCore)
		case "max-use":
			cfg.SpoolMaxUse = sizeOf(f.Name, *maxUse)
		case "keep-free":
			cfg.SpoolKeepFree = sizeOf(f.Name, *keepFree)
		case "env-allow":
			cfg.EnvAllowlist = strings.Split(*envAllow, ",")
		case "rate-limit":
			cfg.RateLimit = *rateLimit
		case "rate-window":
			cfg.RateWindow = *rateWindow
		}
	})
	cfg.Hostname, _ = os.Hostname()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// The deadline ends the core's stream; this ends anything else that
	// hangs (a stuck filesystem), removing the unfinished entry on the way.
	time.AfterFunc(*timeout+time.Minute, func() {
		msg := "collector still running a minute past its deadline: giving up"
		// The filesystem may be what hangs: never wait on it for long.
		done := make(chan error, 1)
		go func() { done <- collector.Abandon() }()
		select {
		case err := <-done:
			if err != nil {
				msg += fmt.Sprintf("; the unfinished entry is left for the agent to clean: %v", err)
			}
		case <-time.After(5 * time.Second):
			msg += "; removing the unfinished entry hangs, the agent will clean it"
		}
		stderr.Error(msg)
		logLine(*spoolDir, slog.LevelError, msg, "args", strings.Join(flags.Args(), " "))
		os.Exit(1)
	})
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	c, err := collector.Run(ctx, cfg, flags.Args(), kernelPipe())
	attrs := []any{"args", strings.Join(flags.Args(), " "), "ms", time.Since(start).Milliseconds()}
	// The collector runs as root in the root cgroup on every crash: its
	// peak memory is logged so that a bound on it can be watched.
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		attrs = append(attrs, "maxrss_kib", ru.Maxrss)
	}
	for _, w := range warnings {
		stderr.Warn(w)
		logLine(*spoolDir, slog.LevelWarn, w, attrs...)
	}
	if err != nil {
		stderr.Error("crash not captured", append(attrs, "err", err)...)
		logLine(*spoolDir, slog.LevelError, "crash not captured", append(attrs, "err", err)...)
		return 1
	}
	logLine(*spoolDir, slog.LevelInfo, "crash captured", append(attrs, corepipe.LogKeyCrash, c.ID, "comm", c.Process.Comm,
		"core_size", c.Core.Size, "dropped", c.Core.Dropped, "truncated", c.Core.Truncated)...)
	return 0
}

// pipeSize is what the kernel's pipe is grown to: the dump is written in
// pages, and a larger pipe lets the kernel write ahead while the collector
// compresses, with fewer wake-ups on both sides.
const pipeSize = 1 << 20

// kernelPipe returns stdin switched to non-blocking mode, which lets Go
// poll it: only then do read deadlines work, and the deadline is what stops
// a dump the kernel cannot finish from holding the collector forever.
func kernelPipe() *os.File {
	// Not a pipe, or above /proc/sys/fs/pipe-max-size: the default is fine.
	unix.FcntlInt(0, unix.F_SETPIPE_SZ, pipeSize)
	if err := unix.SetNonblock(0, true); err != nil {
		return os.Stdin
	}
	return os.NewFile(0, "/dev/stdin")
}

// logLine appends one record to the spool's collector.log. The line is
// built first and written with one O_APPEND write, so collectors running
// side by side do not interleave; values are quoted by slog, so a newline in
// a process name cannot forge a line.
func logLine(spoolDir string, level slog.Level, msg string, attrs ...any) {
	if spoolDir == "" {
		return
	}
	// Same rule as the collector: never write through a symlinked spool.
	if fi, err := os.Lstat(spoolDir); err != nil || !fi.IsDir() {
		return
	}
	root, err := os.OpenRoot(spoolDir)
	if err != nil {
		return
	}
	defer root.Close()
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Log(context.Background(), level, msg, attrs...)

	if fi, err := root.Lstat(spool.LogFile); err == nil && fi.Size() > maxLogSize {
		root.Rename(spool.LogFile, spool.LogFile+".1")
	}
	f, err := root.OpenFile(spool.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return
	}
	f.Write(buf.Bytes())
	f.Close()
}
