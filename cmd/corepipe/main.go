// Command corepipe runs the parts of the crash pipeline — all of them at once
// with `corepipe dev`, or one per process in production — and analyses single
// cores from the command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: corepipe <command> [flags]

commands:
  dev        run the whole pipeline in one process on embedded defaults
  agent      ship the node's spool to the blob store and the queue
  analyzer   analyse queued crashes
  api        index reports and serve the JSON API and web UI
  notifier   tell Slack about new, regressed and spiking crash groups
  analyze    analyse one local core and print its report

client commands (the API at --server or COREPIPE_SERVER, token from COREPIPE_TOKEN):
  ls         list crashes, newest first
  show ID    print one crash's report
  fetch ID   download its core (decompressed) and executable
  debug ID   fetch, then open them in dlv core

Every flag can also be set with the environment variable COREPIPE_<FLAG>
(upper case, dashes as underscores). "corepipe <command> -h" lists the flags.
`

// exitInvalid is the exit status of a command given input it cannot use (a
// malformed core, a wrong executable): retrying will not help.
const exitInvalid = 2

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(exitInvalid)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "dev":
		err = runDev(ctx, log, args)
	case "agent":
		err = runAgent(ctx, log, args)
	case "analyzer":
		err = runAnalyzer(ctx, log, args)
	case "api":
		err = runAPI(ctx, log, args)
	case "notifier":
		err = runNotifier(ctx, log, args)
	case "analyze":
		err = runAnalyze(ctx, args)
	case "ls":
		err = runLs(ctx, os.Stdout, args)
	case "show":
		err = runShow(ctx, os.Stdout, args)
	case "fetch":
		err = runFetch(ctx, os.Stdout, args)
	case "debug":
		err = runDebug(ctx, os.Stdout, args, syscall.Exec)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "corepipe: unknown command %q\n\n%s", cmd, usage)
		os.Exit(exitInvalid)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "corepipe: %v\n", err)
		var coded exitCoder
		if errors.As(err, &coded) {
			os.Exit(coded.ExitCode())
		}
		os.Exit(1)
	}
}

type exitCoder interface{ ExitCode() int }
