package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/buildid"
	"github.com/corepipe/corepipe/symbols"
)

func symbolsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "symbols",
		Short: "upload, list and check debug files in the symbol store",
		Long: `The symbol store keeps the DWARF that shipped binaries no longer carry, by
build ID, so that the crashes of stripped programs get full reports. Upload
the build, strip a copy, ship the copy:

  go build -o prog .
  corepipe symbols upload prog
  objcopy --strip-all prog      # keeps both build IDs

Never upload a build made with -ldflags="-s -w": that changes the build IDs,
so no crash of the shipped binary can ever be matched to it.`,
		Example: `  corepipe symbols upload ./prog            # in CI, before stripping
  corepipe symbols check ./prog             # would its crashes be symbolised?
  corepipe symbols ls --server https://crashes.example.com`,
		Args: unknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(cmd.ErrOrStderr(), cmd.UsageString())
			return exitStatus(exitInvalid)
		},
	}
	cmd.AddCommand(symbolsUploadCmd(), symbolsLsCmd(), symbolsCheckCmd())
	return cmd
}

func symbolsUploadCmd() *cobra.Command {
	var cf *clientFlags
	cmd := &cobra.Command{
		Use:   "upload FILE…",
		Short: "upload unstripped binaries or --only-keep-debug files (idempotent)",
		Example: `  corepipe symbols upload ./prog
  COREPIPE_SERVER=https://crashes.example.com COREPIPE_TOKEN=… corepipe symbols upload prog.debug`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usage(cmd, "upload takes one or more files")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return uploadSymbols(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cf, args)
		},
	}
	cf = clientFlagsOf(cmd.Flags())
	return cmd
}

// uploadSymbols uploads each file, going on past a file that fails so that
// one bad file in a CI job's list does not hide the others' results.
func uploadSymbols(ctx context.Context, stdout, stderr io.Writer, cf *clientFlags, files []string) error {
	c, err := cf.client()
	if err != nil {
		return err
	}
	failed := 0
	for _, path := range files {
		if symbols.BuiltStripped(path) {
			fmt.Fprintf(stderr, "corepipe: warning: %s was built with -ldflags=-s or -w: its build IDs can never match a binary built without them; upload the plain build and strip a copy (objcopy --strip-all)\n", path)
		}
		ids, err := fileIDs(path)
		if err == nil {
			err = hasDWARF(path)
		}
		if err != nil {
			fmt.Fprintf(stderr, "corepipe: %s: %v\n", path, err)
			failed++
			continue
		}
		id := ids.GNU
		if id == "" {
			id = ids.Go
		}
		up, err := c.Upload(ctx, id, path)
		if err != nil {
			fmt.Fprintf(stderr, "corepipe: upload %s: %v\n", path, err)
			failed++
			continue
		}
		verb := "uploaded"
		if !up.Stored {
			verb = "already stored"
		}
		fmt.Fprintf(stdout, "%s: %s %s (%d bytes)\n", path, verb, up.Meta.IDs(), up.Meta.Size)
		if r := up.Reanalysis; r != nil {
			fmt.Fprintf(stdout, "%s: %d kept crashes of this build queued for re-analysis, %d skipped\n", path, len(r.Queued), len(r.Skipped))
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files not uploaded", failed, len(files))
	}
	return nil
}

func fileIDs(path string) (buildid.IDs, error) {
	f, err := os.Open(path)
	if err != nil {
		return buildid.IDs{}, err
	}
	defer f.Close()
	ids, err := buildid.Read(f)
	if err == nil && ids.GNU == "" && ids.Go == "" {
		err = errors.New("no build ID (GNU or Go): no crash could be matched to it")
	}
	return ids, err
}

func hasDWARF(path string) error {
	ok, err := symbols.HasDWARF(path)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("no DWARF (.debug_info): built with -ldflags=-s -w or stripped; nothing to upload")
	}
	return nil
}

func symbolsLsCmd() *cobra.Command {
	var (
		cf     *clientFlags
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "ls",
		Short:   "list the debug files in the symbol store",
		Example: "  corepipe symbols ls\n  corepipe symbols ls --json --limit 20",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			list, err := c.Symbols(cmd.Context(), limit)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BUILD ID\tMODULE\tVERSION\tGO\tARCH\tSIZE\tNAME")
			for _, m := range list {
				id := m.GNUBuildID
				if id == "" {
					id = "go:" + m.GoBuildID
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", id, dash(m.Module), dash(m.Version), dash(m.GoVersion), dash(m.GOARCH), m.Size, m.Name)
			}
			return tw.Flush()
		},
	}
	cf = clientFlagsOf(cmd.Flags())
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most this many (default: the server's maximum)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the metadata as JSON")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func symbolsCheckCmd() *cobra.Command {
	var cf *clientFlags
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "say whether a crash of this binary would be fully symbolised",
		Long: `Say whether a crash of FILE would get a full report: FILE carries its own
DWARF, or the symbol store has the debug file of its build ID. Exit status 1
when it would not.`,
		Example: "  corepipe symbols check ./prog-stripped    # the binary you ship",
		Args:    func(cmd *cobra.Command, args []string) error { return exactArgs(1, "one file")(cmd, args) },
		RunE: func(cmd *cobra.Command, args []string) error {
			return checkSymbols(cmd.Context(), cmd.OutOrStdout(), cf, args[0])
		},
	}
	cf = clientFlagsOf(cmd.Flags())
	return cmd
}

func checkSymbols(ctx context.Context, stdout io.Writer, cf *clientFlags, path string) error {
	ids, err := fileIDs(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	ok, err := symbols.HasDWARF(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if ok {
		fmt.Fprintf(stdout, "%s: fully symbolised: it carries its own DWARF\n", path)
		return nil
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	for _, id := range []string{ids.GNU, ids.Go} {
		if id == "" {
			continue
		}
		m, err := c.Symbol(ctx, id)
		if errors.Is(err, corepipe.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: fully symbolised: the symbol store has its debug file (%s, %s)\n", path, m.IDs(), dash(m.Name))
		return nil
	}
	fmt.Fprintf(stdout, "%s: NOT symbolised: no DWARF, and the symbol store has no debug file for %s; a crash would report thread stacks only\n",
		path, (&symbols.Meta{GNUBuildID: ids.GNU, GoBuildID: ids.Go}).IDs())
	if symbols.BuiltStripped(path) {
		fmt.Fprintf(stdout, "%s: it was built with -ldflags=-s or -w: rebuild without them, upload that build, ship a stripped copy\n", path)
	}
	return exitStatus(1)
}

// debuginfodEnv is env with the API first in DEBUGINFOD_URLS, before any
// server already there: dlv then finds a stripped executable's debug file
// in the symbol store. With auth on, debuginfod-find needs the token from a
// DEBUGINFOD_HEADERS_FILE of the user's ("Authorization: Bearer TOKEN"):
// corepipe writes no token to disk.
func debuginfodEnv(env []string, server string) []string {
	urls := strings.TrimSuffix(server, "/")
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "DEBUGINFOD_URLS="); ok {
			if v = strings.TrimSpace(v); v != "" {
				urls += " " + v
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, "DEBUGINFOD_URLS="+urls)
}
