package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/client"
)

func groupsCmd() *cobra.Command {
	var filter corepipe.GroupFilter
	var list *listFlags
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "list crash groups (bugs), most recently seen first",
		Example: `  corepipe groups --status regressed
  corepipe groups --assignee team-payments --since 7d`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printList(cmd.Context(), cmd.OutOrStdout(), list,
				func(ctx context.Context, c *client.Client, since time.Time, limit int, cursor string) ([]*corepipe.Group, string, error) {
					f := filter
					f.Since, f.Limit, f.Cursor = since, limit, cursor
					return c.Groups(ctx, f)
				}, writeGroupTable)
		},
	}
	fset := cmd.Flags()
	list = listFlagsOf(fset, "groups")
	fset.StringVar((*string)(&filter.Status), "status", "", "new, ongoing, regressed, resolved or ignored")
	fset.StringVar(&filter.Assignee, "assignee", "", "only the groups this person or team owns")
	return cmd
}

func writeGroupTable(w io.Writer, groups []*corepipe.Group) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SIGNATURE\tSTATUS\tCOUNT\tLAST SEEN\tOWNER\tWHAT")
	for _, g := range groups {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", g.Signature, g.Status, g.Count,
			g.LastSeen.Local().Format("2006-01-02 15:04:05"), g.Assignee, tableText(g.Title))
	}
	return tw.Flush()
}

// triageFlags are `corepipe triage`'s flags.
type triageFlags struct {
	client  *clientFlags
	resolve bool
	in      string
	ignore  bool
	until   string
	count   int
	reopen  bool
	assign  string
	comment string
}

func triageCmd() *cobra.Command {
	f := &triageFlags{}
	cmd := &cobra.Command{
		Use:   "triage SIGNATURE",
		Short: "resolve, ignore, reopen or assign a crash group",
		Long: `Change a crash group's state, as the group page's form does; needs a token of the
triage role or above. A resolved group that crashes in a version newer than the one
it was resolved in comes back as regressed; an ignored one is silent in Slack until
its time or count runs out.`,
		Example: `  corepipe triage gocrash/v1:3f2a… --resolve --in next --comment "fixed by #412"
  corepipe triage gocrash/v1:3f2a… --resolve --in v1.8.0
  corepipe triage gocrash/v1:3f2a… --ignore --until 72h
  corepipe triage gocrash/v1:3f2a… --ignore --count 100
  corepipe triage gocrash/v1:3f2a… --assign team-payments`,
		Args: exactArgs(1, "one group signature"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(cmd)
			if err != nil {
				return &usageError{cmd: cmd, err: err}
			}
			return triage(cmd.Context(), cmd.OutOrStdout(), f.client, args[0], req)
		},
	}
	fset := cmd.Flags()
	f.client = clientFlagsOf(fset)
	fset.BoolVar(&f.resolve, "resolve", false, "mark the group resolved")
	fset.StringVar(&f.in, "in", "", `with --resolve: the VERSION that fixes it, or "next" for the release after the newest one seen (default: now)`)
	fset.BoolVar(&f.ignore, "ignore", false, "silence the group (forever unless --until or --count)")
	fset.StringVar(&f.until, "until", "", "with --ignore: until this RFC 3339 time or for this long (72h)")
	fset.IntVar(&f.count, "count", 0, "with --ignore: until this many more crashes")
	fset.BoolVar(&f.reopen, "reopen", false, "open the group again")
	fset.StringVar(&f.assign, "assign", "", `the person or team that owns the group ("-" for nobody)`)
	fset.StringVar(&f.comment, "comment", "", "why, for the group's history")
	return cmd
}

func (f *triageFlags) request(cmd *cobra.Command) (client.TriageRequest, error) {
	var req client.TriageRequest
	n := 0
	for _, set := range []bool{f.resolve, f.ignore, f.reopen} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return req, errors.New("--resolve, --ignore and --reopen exclude each other")
	case n == 0 && !cmd.Flags().Changed("assign") && f.comment == "":
		return req, errors.New("say what to do: --resolve, --ignore, --reopen, --assign or --comment")
	case f.in != "" && !f.resolve:
		return req, errors.New("--in goes with --resolve")
	case (f.until != "" || f.count != 0) && !f.ignore:
		return req, errors.New("--until and --count go with --ignore")
	case f.count < 0:
		return req, fmt.Errorf("--count %d: want a positive number", f.count)
	}
	switch {
	case f.resolve:
		req.Status, req.ResolvedIn = corepipe.TriageResolved, f.in
	case f.ignore:
		req.Status, req.IgnoreUntil, req.IgnoreCount = corepipe.TriageIgnored, f.until, int64(f.count)
	case f.reopen:
		req.Status = corepipe.TriageOpen
	}
	if cmd.Flags().Changed("assign") {
		a := f.assign
		if a == "-" {
			a = ""
		}
		req.Assignee = &a
	}
	req.Comment = f.comment
	return req, nil
}

func triage(ctx context.Context, stdout io.Writer, cf *clientFlags, signature string, req client.TriageRequest) error {
	c, err := cf.client()
	if err != nil {
		return err
	}
	g, err := c.Triage(ctx, signature, req)
	if err != nil {
		return err
	}
	owner := g.Assignee
	if owner == "" {
		owner = "nobody"
	}
	_, err = fmt.Fprintf(stdout, "%s: %s, owned by %s\n", g.Signature, g.Status, owner)
	return err
}
