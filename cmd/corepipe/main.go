// Command corepipe runs the parts of the crash pipeline — all of them at once
// with `corepipe dev`, or one per process in production — and analyses single
// cores from the command line.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/corepipe/corepipe/analyzer"
)

// exitInvalid is the exit status of a command given input it cannot use (a
// malformed core, a wrong executable, a bad flag): retrying will not help.
const exitInvalid = 2

func main() {
	analyzer.ChildInit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	err := newRoot(log, syscall.Exec).ExecuteContext(ctx)
	stop()
	os.Exit(report(os.Stderr, err))
}
