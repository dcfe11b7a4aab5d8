package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// addTemplateFuncs registers the usage template's functions once: cobra
// keeps them in one package-wide map, which roots built at the same time
// (the tests run CLIs side by side) would otherwise write concurrently, a
// fatal "concurrent map writes".
var addTemplateFuncs sync.Once

// newRoot is the command tree. Each command's flags live in its own
// constructor; a new flag is one line there, and reads COREPIPE_<FLAG> like
// every other.
func newRoot(log *slog.Logger, exec execFunc) *cobra.Command {
	root := &cobra.Command{
		Use:   "corepipe",
		Short: "catch the crashes of Go programs as core dumps, analyse them and show them",
		Long: `corepipe runs the parts of the crash pipeline — all of them at once with
"corepipe dev", or one per process in production — analyses single cores
from the command line, and browses the crashes an API holds.`,
		Example: `  corepipe dev --install-handler                 # everything on this machine (as root)
  corepipe analyze core.1234 --exe ./myprog -o text
  corepipe ls --since 24h --namespace prod`,
		Args: unknownCommand,
		// Without a command: what there is to run, and the status of a
		// command line that did nothing.
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(cmd.ErrOrStderr(), cmd.UsageString())
			return exitStatus(exitInvalid)
		},
		PersistentPreRunE:     func(cmd *cobra.Command, _ []string) error { return fromEnv(cmd) },
		SilenceErrors:         true,
		SilenceUsage:          true,
		DisableFlagsInUseLine: true,
		// Cobra sets its default only on the paths that print its own
		// multi-line message.
		SuggestionsMinimumDistance: 2,
	}
	root.SetFlagErrorFunc(flagError)
	addTemplateFuncs.Do(func() {
		cobra.AddTemplateFunc("envExample", envExample)
		cobra.AddTemplateFunc("hasSizeFlags", hasSizeFlags)
	})
	root.SetUsageTemplate(root.UsageTemplate() + `{{if .HasAvailableLocalFlags}}
Every flag can also be set as COREPIPE_<FLAG>, upper case with dashes as
underscores ({{envExample .}}); the command line wins.
{{- if hasSizeFlags .}}
Sizes are bytes or take a unit of 1024: 512M, 2G, 1.5G, 64KiB.{{end}}
{{end}}`)
	root.AddGroup(
		&cobra.Group{ID: "parts", Title: "Parts of the pipeline:"},
		&cobra.Group{ID: "local", Title: "On this machine:"},
		&cobra.Group{ID: "client", Title: "Clients of the API (at --server or COREPIPE_SERVER, token from COREPIPE_TOKEN):"},
	)
	for _, c := range []*cobra.Command{devCmd(log), agentCmd(log), analyzerCmd(log), apiCmd(log), notifierCmd(log), kpanicCmd(log)} {
		c.GroupID = "parts"
		root.AddCommand(c)
	}
	analyze := analyzeCmd()
	analyze.GroupID = "local"
	root.AddCommand(analyze)
	for _, c := range []*cobra.Command{lsCmd(), groupsCmd(), triageCmd(), showCmd(), fetchCmd(), debugCmd(exec), symbolsCmd(), reanalyzeCmd()} {
		c.GroupID = "client"
		root.AddCommand(c)
	}
	// completion and help join it under "Additional Commands".
	root.AddCommand(versionCmd())
	return root
}

// usageError is a mistake in how a command was called: one line saying
// what, a pointer to the command's help, and exit status 2.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%v; see '%s --help'", e.err, e.cmd.CommandPath())
}

func (e *usageError) Unwrap() error { return e.err }

func (*usageError) ExitCode() int { return exitInvalid }

func usage(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// exitStatus ends the process with a status and no message: what had to be
// said is said.
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

func (s exitStatus) ExitCode() int { return int(s) }

type exitCoder interface{ ExitCode() int }

// report prints err, if any, as one line on w and returns the process's
// exit status.
func report(w io.Writer, err error) int {
	if err == nil {
		return 0
	}
	var silent exitStatus
	if !errors.As(err, &silent) {
		fmt.Fprintf(w, "corepipe: %v\n", err)
	}
	var coded exitCoder
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	return 1
}

func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		slices.Sort(s)
		return usage(cmd, "unknown command %q (did you mean %s?)", args[0], strings.Join(quoteAll(s), " or "))
	}
	return usage(cmd, "unknown command %q", args[0])
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usage(cmd, "unexpected argument %q", args[0])
	}
	return nil
}

// exactArgs wants n arguments, named by what.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == n:
			return nil
		case len(args) < n:
			return usage(cmd, "%s takes %s", cmd.Name(), what)
		}
		return usage(cmd, "%s takes %s; unexpected %q", cmd.Name(), what, args[n:])
	}
}

func quoteAll(words []string) []string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = fmt.Sprintf("%q", w)
	}
	return q
}

// envExample shows the environment variable of one of cmd's own flags, for
// its help.
func envExample(cmd *cobra.Command) string {
	name := ""
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if name == "" && f.Name != "help" && !f.Hidden {
			name = f.Name
		}
	})
	if name == "" {
		name = "max-core-size"
	}
	return "--" + name + " is " + envName(name)
}

func hasSizeFlags(cmd *cobra.Command) bool {
	found := false
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) { found = found || f.Value.Type() == "size" })
	return found
}

// required makes flags mandatory, given on the command line or in the
// environment.
func required(flags ...string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		var missing []string
		for _, f := range flags {
			if !cmd.Flags().Changed(f) {
				missing = append(missing, "--"+f)
			}
		}
		switch len(missing) {
		case 0:
			return nil
		case 1:
			return usage(cmd, "%s is required", missing[0])
		}
		return usage(cmd, "%s are required", strings.Join(missing, " and "))
	}
}
