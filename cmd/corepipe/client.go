package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/client"
)

// clientFlags are the flags of every command that talks to the API. The
// token comes only from the environment, never a flag, so that it stays out
// of shell history and process lists.
type clientFlags struct {
	server string
}

func clientFlagsOf(fset *pflag.FlagSet) *clientFlags {
	f := &clientFlags{}
	fset.StringVar(&f.server, "server", "http://127.0.0.1:8080", "`URL` of the corepipe API (also COREPIPE_SERVER); the token is read from COREPIPE_TOKEN")
	return f
}

func (f *clientFlags) client() (*client.Client, error) {
	return client.New(f.server, os.Getenv("COREPIPE_TOKEN"))
}

// crash fetches the report of crash id, with the client that did.
func (f *clientFlags) crash(ctx context.Context, id string) (*client.Client, *corepipe.Report, error) {
	c, err := f.client()
	if err != nil {
		return nil, nil, err
	}
	r, err := c.Crash(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return c, r, nil
}

// oneID takes the single crash ID of show, fetch and debug.
func oneID(cmd *cobra.Command, args []string) error {
	if err := exactArgs(1, "one crash ID")(cmd, args); err != nil {
		return err
	}
	if err := corepipe.CheckID(args[0]); err != nil {
		return &usageError{cmd: cmd, err: err}
	}
	return nil
}

// listFlags are the flags ls and groups share: the server, the window, how
// many, and the output form.
type listFlags struct {
	client *clientFlags
	since  string
	limit  int
	json   bool
}

// listFlagsOf registers them; what names the items ("crashes", "groups").
func listFlagsOf(fset *pflag.FlagSet, what string) *listFlags {
	f := &listFlags{client: clientFlagsOf(fset)}
	fset.StringVar(&f.since, "since", "", "only "+what+" seen since this RFC 3339 time or this long ago (24h)")
	fset.IntVar(&f.limit, "limit", 50, "at most this many "+what)
	fset.BoolVar(&f.json, "json", false, "print the "+what+" as JSON, one per line")
	return f
}

// printList fetches up to --limit items in the --since window, a page at a
// time, and prints them as JSON lines or with table.
func printList[T any](ctx context.Context, stdout io.Writer, fl *listFlags,
	page func(ctx context.Context, c *client.Client, since time.Time, limit int, cursor string) ([]T, string, error),
	table func(io.Writer, []T) error) error {
	since, err := listWindow(fl.limit, fl.since)
	if err != nil {
		return err
	}
	c, err := fl.client.client()
	if err != nil {
		return err
	}
	items, err := allPages(fl.limit, func(limit int, cursor string) ([]T, string, error) {
		return page(ctx, c, since, limit, cursor)
	})
	if err != nil {
		return err
	}
	if fl.json {
		return jsonLines(stdout, items)
	}
	return table(stdout, items)
}

// tableText is text of any length as one table cell on one terminal line.
func tableText(s string) string {
	return corepipe.Clip(strings.ReplaceAll(s, "\n", " "), maxTitle-1)
}

func lsCmd() *cobra.Command {
	var filter corepipe.CrashFilter
	var list *listFlags
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "list crashes, newest first",
		Example: `  corepipe ls --since 24h --namespace prod
  corepipe ls --signature gocrash/v1:3f2a… --limit 10
  corepipe ls --q "index out of range" --namespace prod
  corepipe ls --status failed --json | jq -r .id`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printList(cmd.Context(), cmd.OutOrStdout(), list,
				func(ctx context.Context, c *client.Client, since time.Time, limit int, cursor string) ([]*corepipe.Report, string, error) {
					f := filter
					f.Since, f.Limit, f.Cursor = since, limit, cursor
					return c.Crashes(ctx, f)
				}, writeCrashTable)
		},
	}
	fset := cmd.Flags()
	list = listFlagsOf(fset, "crashes")
	fset.StringVar(&filter.Node, "node", "", "only crashes on this node")
	fset.StringVar(&filter.Namespace, "namespace", "", "only crashes in this Kubernetes namespace")
	fset.StringVar(&filter.Pod, "pod", "", "only crashes of this pod")
	fset.StringVar(&filter.Exe, "exe", "", "only crashes of this executable (path or base name)")
	fset.StringVar((*string)(&filter.Status), "status", "", "analyzed, failed, pending or dropped")
	fset.StringVar(&filter.Signature, "signature", "", "only crashes of this group")
	fset.StringVar(&filter.Query, "q", "", "only crashes whose title, panic message or crashing functions have these words (whole words; end one with * for a prefix)")
	return cmd
}

func sinceFlag(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time or a duration such as 24h", v)
	}
	return now.Add(-d), nil
}

// maxTitle keeps one crash on one terminal line.
const maxTitle = 80

func writeCrashTable(w io.Writer, crashes []*corepipe.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCAPTURED\tNODE\tWHERE\tSTATUS\tWHAT")
	for _, r := range crashes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.CapturedAt.Local().Format("2006-01-02 15:04:05"),
			r.Node, r.Workload(), r.Status, tableText(r.Headline()))
	}
	return tw.Flush()
}

func showCmd() *cobra.Command {
	var (
		cf     *clientFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "print one crash's report",
		Example: `  corepipe show 01JDX8Q3W6K2M4N5P6R7S8T9V0
  corepipe show 01JDX8Q3W6K2M4N5P6R7S8T9V0 --json | jq .goroutines[0].frames`,
		Args: oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return showCrash(cmd.Context(), cmd.OutOrStdout(), cf, args[0], asJSON)
		},
	}
	cf = clientFlagsOf(cmd.Flags())
	cmd.ValidArgsFunction = completeCrashIDs(cf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the full report as JSON")
	return cmd
}

func showCrash(ctx context.Context, stdout io.Writer, cf *clientFlags, id string, asJSON bool) error {
	_, r, err := cf.crash(ctx, id)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.WriteText(stdout)
}

func fetchCmd() *cobra.Command {
	var (
		cf   *clientFlags
		dir  string
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "fetch ID",
		Short: "download a crash's core (decompressed) and executable",
		Example: `  corepipe fetch 01JDX8Q3W6K2M4N5P6R7S8T9V0                 # into corepipe-01JDX8Q3W6K2M4N5P6R7S8T9V0/
  corepipe fetch 01JDX8Q3W6K2M4N5P6R7S8T9V0 --dir /tmp/crash
  corepipe fetch 01JDX8Q3W6K2M4N5P6R7S8T9V0 --wait 5m          # a core kept on its node: request it, wait for it`,
		Args: oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, r, err := cf.crash(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if wait > 0 && r.Artifacts.Core.Key == "" {
				if r, err = waitCore(cmd.Context(), cmd.ErrOrStderr(), c, r, wait); err != nil {
					return err
				}
			}
			if err := hasCore(r); err != nil {
				return err
			}
			files, err := c.Fetch(cmd.Context(), args[0], dirOr(dir, args[0]), false)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "core:       %s\nexecutable: %s\n", files.Core, files.Executable)
			return nil
		},
	}
	cf = clientFlagsOf(cmd.Flags())
	cmd.ValidArgsFunction = completeCrashIDs(cf)
	cmd.Flags().StringVar(&dir, "dir", "", "`directory` to write the core and executable to (default corepipe-ID)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "for a core kept on its node (--cores-per-signature): request it and wait this long for the node to upload it (0: do not)")
	cmd.MarkFlagDirname("dir")
	return cmd
}

// waitCore requests the core of r, kept on its node, and polls until the
// report says it is stored or wait has passed.
func waitCore(ctx context.Context, stderr io.Writer, c *client.Client, r *corepipe.Report, wait time.Duration) (*corepipe.Report, error) {
	loc, err := c.RequestCore(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if loc.State == corepipe.CoreStored {
		return c.Crash(ctx, r.ID)
	}
	fmt.Fprintf(stderr, "corepipe: core requested from node %s, waiting up to %v\n", loc.Node, wait)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("crash %s: node %s did not upload the core within %v (it is %s)", r.ID, loc.Node, wait, loc)
		case <-t.C:
		}
		got, err := c.Crash(ctx, r.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return nil, err
		}
		if got.Artifacts.Core.Key != "" {
			return got, nil
		}
	}
}

func dirOr(dir, id string) string {
	if dir != "" {
		return dir
	}
	return "corepipe-" + id
}

// execFunc replaces the process with another program: syscall.Exec in main,
// a recorder in tests.
type execFunc func(path string, argv []string, env []string) error

func debugCmd(exec execFunc) *cobra.Command {
	var (
		cf  *clientFlags
		dir string
	)
	cmd := &cobra.Command{
		Use:   "debug ID",
		Short: "fetch a crash, then open it in dlv core",
		Long: `Fetch a crash's core and executable (reusing complete files of an earlier
fetch into the same directory), then run dlv core on them in place of this
process, so that delve owns the terminal. dlv must be on PATH.`,
		Example: `  corepipe debug 01JDX8Q3W6K2M4N5P6R7S8T9V0
  COREPIPE_SERVER=https://crashes.example.com corepipe debug 01JDX8Q3W6K2M4N5P6R7S8T9V0 --dir /tmp/crash`,
		Args: oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return debugCrash(cmd.Context(), cmd.OutOrStdout(), cf, args[0], dirOr(dir, args[0]), exec)
		},
	}
	cf = clientFlagsOf(cmd.Flags())
	cmd.ValidArgsFunction = completeCrashIDs(cf)
	cmd.Flags().StringVar(&dir, "dir", "", "`directory` to fetch the core and executable into (default corepipe-ID)")
	cmd.MarkFlagDirname("dir")
	return cmd
}

// debugCrash fetches a crash and replaces itself with `dlv core`, so that
// delve owns the terminal and Ctrl-C reaches it, not this process.
func debugCrash(ctx context.Context, stdout io.Writer, cf *clientFlags, id, dir string, exec execFunc) error {
	// Before downloading gigabytes for nothing.
	dlv, err := lookDlv()
	if err != nil {
		return err
	}
	c, r, err := cf.crash(ctx, id)
	if err != nil {
		return err
	}
	if err := hasCore(r); err != nil {
		return err
	}
	files, err := c.Fetch(ctx, id, dir, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "corepipe: dlv core %s %s\n", files.Executable, files.Core)
	if err := exec(dlv, []string{"dlv", "core", files.Executable, files.Core}, debuginfodEnv(os.Environ(), cf.server)); err != nil {
		return fmt.Errorf("run %s: %w", dlv, err)
	}
	return nil
}

func lookDlv() (string, error) {
	dlv, err := exec.LookPath("dlv")
	if errors.Is(err, exec.ErrNotFound) {
		return "", errors.New("dlv (delve) is not on PATH: install it with `go install github.com/go-delve/delve/cmd/dlv@latest`, or use `corepipe fetch` and a debugger of your choice")
	}
	if err != nil {
		return "", fmt.Errorf("find dlv: %w", err)
	}
	return dlv, nil
}

// hasCore says, in one line, why a crash has no core to fetch or debug: the
// most common case in Kubernetes, where a report comes from a log.
func hasCore(r *corepipe.Report) error {
	if r.Artifacts.Core.Key != "" {
		return nil
	}
	why := r.Artifacts.Core.Dropped
	if why == "" {
		why = "no core was kept"
	}
	if l := r.Artifacts.Core.Location; l != nil {
		loc := r.Artifacts.Core.Where(time.Now())
		if loc.State == corepipe.CoreOnNode {
			return invalidInput{fmt.Errorf("crash %s: its core is %s: corepipe fetch %s --wait 5m requests it", r.ID, loc, r.ID)}
		}
		why = "the core is " + loc.String()
	}
	what := ""
	if r.Source != "" && r.Source != corepipe.SourceCore {
		what = "; its report comes from the " + corepipe.SourceName(r.Source) + ": corepipe show " + r.ID
	}
	return invalidInput{fmt.Errorf("crash %s has no core to debug (%s)%s", r.ID, strings.TrimPrefix(why, "no core: "), what)}
}

// listWindow checks a list command's --limit and reads its --since.
func listWindow(limit int, since string) (time.Time, error) {
	if limit < 1 {
		return time.Time{}, fmt.Errorf("--limit %d: want a positive number", limit)
	}
	if since == "" {
		return time.Time{}, nil
	}
	return sinceFlag(since, time.Now())
}

// allPages follows a list's cursors until it has limit items or the list
// ends.
func allPages[T any](limit int, page func(limit int, cursor string) ([]T, string, error)) ([]T, error) {
	var out []T
	cursor := ""
	for len(out) < limit {
		items, next, err := page(limit-len(out), cursor)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == "" {
			break
		}
		cursor = next
	}
	return out, nil
}

// jsonLines prints one JSON document per line, for scripts.
func jsonLines[T any](w io.Writer, items []T) error {
	enc := json.NewEncoder(w)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			return err
		}
	}
	return nil
}
