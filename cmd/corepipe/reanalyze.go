package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/client"
)

// reanalyzeFlags are `corepipe reanalyze`'s flags.
type reanalyzeFlags struct {
	client *clientFlags
	req    client.ReanalyzeRequest
	all    bool
}

func reanalyzeCmd() *cobra.Command {
	f := &reanalyzeFlags{}
	cmd := &cobra.Command{
		Use:   "reanalyze",
		Short: "analyse kept crashes again, e.g. once their build's symbols are uploaded",
		Long: `Have the analyzers analyse crashes again, whose core and executable are still
stored: one crash (--id), a group (--signature), or every crash of a build (--build-id,
as corepipe symbols ls prints it). Each gets a new report under the same crash ID,
with the next revision; a re-analysis that fails keeps the report it would have
replaced. Needs a token of the triage role or above.

The server takes at most --limit crashes a call and says which it queued and which
it skipped, and why (no core kept, core expired, analysis still pending). --all
goes on through every page.`,
		Example: `  corepipe symbols upload bin/server.debug && corepipe reanalyze --build-id gnu:4c1d2f…
  corepipe reanalyze --id 01JD2X7Q3R5T8V9W0Y1Z2A3B4C
  corepipe reanalyze --signature gocrash/v1:3f2a… --all`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.req.ID == "" && f.req.Signature == "" && f.req.BuildID == "" {
				return &usageError{cmd: cmd, err: fmt.Errorf("say which crashes: --id, --signature or --build-id")}
			}
			if f.req.ID != "" {
				if err := corepipe.CheckID(f.req.ID); err != nil {
					return &usageError{cmd: cmd, err: err}
				}
			}
			return reanalyze(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fset := cmd.Flags()
	f.client = clientFlagsOf(fset)
	fset.StringVar(&f.req.ID, "id", "", "the crash `ID` to analyse again")
	fset.StringVar(&f.req.Signature, "signature", "", "analyse again the crashes of this group")
	fset.StringVar(&f.req.BuildID, "build-id", "", "analyse again the crashes of this build: gnu:HEX, go:ID or the bare ID")
	fset.IntVar(&f.req.Limit, "limit", 100, "at most this many crashes per call (the server takes up to 1000)")
	fset.StringVar(&f.req.Cursor, "cursor", "", "go on where an earlier call stopped")
	fset.BoolVar(&f.all, "all", false, "go on through every page of matching crashes")
	return cmd
}

func reanalyze(ctx context.Context, stdout io.Writer, f *reanalyzeFlags) error {
	c, err := f.client.client()
	if err != nil {
		return err
	}
	var matched, queued, skipped int
	req := f.req
	for {
		res, err := c.Reanalyze(ctx, req)
		if err != nil {
			return err
		}
		for _, q := range res.Queued {
			fmt.Fprintf(stdout, "queued %s (revision %d)\n", q.ID, q.Revision)
		}
		for _, s := range res.Skipped {
			fmt.Fprintf(stdout, "skipped %s: %s\n", s.ID, s.Reason)
		}
		matched, queued, skipped = matched+res.Matched, queued+len(res.Queued), skipped+len(res.Skipped)
		if res.NextCursor == "" {
			break
		}
		if !f.all {
			fmt.Fprintf(stdout, "more crashes match: go on with --cursor %s, or use --all\n", res.NextCursor)
			break
		}
		req.Cursor = res.NextCursor
	}
	if matched == 0 {
		fmt.Fprintln(stdout, "no indexed crash matches")
		return nil
	}
	fmt.Fprintf(stdout, "%d crashes: %d queued for re-analysis, %d skipped\n", matched, queued, skipped)
	return nil
}
