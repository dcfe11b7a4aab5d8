package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/client"
)

// clientFlags are the flags of every command that talks to the API. The
// token comes only from the environment, never a flag, so that it stays out
// of shell history and process lists.
type clientFlags struct {
	server string
}

func clientFlagsOf(fset *flag.FlagSet) *clientFlags {
	f := &clientFlags{}
	fset.StringVar(&f.server, "server", "http://127.0.0.1:8080", "the corepipe API (also COREPIPE_SERVER); the token is read from COREPIPE_TOKEN")
	return f
}

func (f *clientFlags) client() (*client.Client, error) {
	return client.New(f.server, os.Getenv("COREPIPE_TOKEN"))
}

// parseArgs parses flags wherever they are among the arguments
// ("show ID --json" as well as "show --json ID") and returns the others.
func parseArgs(fset *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := parse(fset, args); err != nil {
			return nil, err
		}
		if fset.NArg() == 0 {
			return rest, nil
		}
		rest = append(rest, fset.Arg(0))
		args = fset.Args()[1:]
	}
}

// oneID is the single crash ID a command takes.
func oneID(cmd string, args []string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("usage: corepipe %s [flags] ID", cmd)
	}
	return args[0], corepipe.CheckID(args[0])
}

func runLs(ctx context.Context, stdout io.Writer, args []string) error {
	fset := flag.NewFlagSet("ls", flag.ContinueOnError)
	cf := clientFlagsOf(fset)
	var f corepipe.CrashFilter
	fset.StringVar(&f.Node, "node", "", "only crashes on this node")
	fset.StringVar(&f.Namespace, "namespace", "", "only crashes in this Kubernetes namespace")
	fset.StringVar(&f.Pod, "pod", "", "only crashes of this pod")
	fset.StringVar(&f.Exe, "exe", "", "only crashes of this executable (path or base name)")
	fset.StringVar(&f.Status, "status", "", "analyzed, failed or pending")
	fset.StringVar(&f.Signature, "signature", "", "only crashes of this group")
	since := fset.String("since", "", "only crashes since this RFC 3339 time or this long ago (24h)")
	limit := fset.Int("limit", 50, "at most this many crashes")
	asJSON := fset.Bool("json", false, "print the summaries as JSON, one per line")
	rest, err := parseArgs(fset, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("usage: corepipe ls [flags]: unexpected %q", rest[0])
	}
	if *limit < 1 {
		return fmt.Errorf("--limit %d: want a positive number", *limit)
	}
	if *since != "" {
		if f.Since, err = sinceFlag(*since, time.Now()); err != nil {
			return err
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var crashes []*corepipe.Report
	for len(crashes) < *limit {
		f.Limit = *limit - len(crashes)
		page, next, err := c.Crashes(ctx, f)
		if err != nil {
			return err
		}
		crashes = append(crashes, page...)
		if next == "" {
			break
		}
		f.Cursor = next
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range crashes {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	return writeCrashTable(stdout, crashes)
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
		where := r.Workload()
		title := r.Title
		switch {
		case title == "" && r.Panic != nil:
			title = r.Panic.Kind + ": " + r.Panic.Message
		case title == "" && r.Error != "":
			title = "analysis failed: " + r.Error
		}
		title = strings.ReplaceAll(title, "\n", " ")
		if len(title) > maxTitle {
			title = title[:maxTitle-1] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.CapturedAt.Local().Format("2006-01-02 15:04:05"),
			r.Node, where, r.Status, title)
	}
	return tw.Flush()
}

func runShow(ctx context.Context, stdout io.Writer, args []string) error {
	fset := flag.NewFlagSet("show", flag.ContinueOnError)
	cf := clientFlagsOf(fset)
	asJSON := fset.Bool("json", false, "print the full report as JSON")
	rest, err := parseArgs(fset, args)
	if err != nil {
		return err
	}
	id, err := oneID("show", rest)
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	r, err := c.Crash(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.WriteText(stdout)
}

func runFetch(ctx context.Context, stdout io.Writer, args []string) error {
	fset := flag.NewFlagSet("fetch", flag.ContinueOnError)
	cf := clientFlagsOf(fset)
	dir := fset.String("dir", "", "directory to write the core and executable to (default corepipe-ID)")
	rest, err := parseArgs(fset, args)
	if err != nil {
		return err
	}
	id, err := oneID("fetch", rest)
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	files, err := c.Fetch(ctx, id, dirOr(*dir, id), false)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "core:       %s\nexecutable: %s\n", files.Core, files.Executable)
	return nil
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

// runDebug fetches a crash (reusing complete files of an earlier fetch into
// the same directory) and replaces itself with `dlv core`, so that delve
// owns the terminal and Ctrl-C reaches it, not this process.
func runDebug(ctx context.Context, stdout io.Writer, args []string, exec execFunc) error {
	fset := flag.NewFlagSet("debug", flag.ContinueOnError)
	cf := clientFlagsOf(fset)
	dir := fset.String("dir", "", "directory to fetch the core and executable into (default corepipe-ID)")
	rest, err := parseArgs(fset, args)
	if err != nil {
		return err
	}
	id, err := oneID("debug", rest)
	if err != nil {
		return err
	}
	// Before downloading gigabytes for nothing.
	dlv, err := lookDlv()
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	files, err := c.Fetch(ctx, id, dirOr(*dir, id), true)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "corepipe: dlv core %s %s\n", files.Executable, files.Core)
	if err := exec(dlv, []string{"dlv", "core", files.Executable, files.Core}, os.Environ()); err != nil {
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
