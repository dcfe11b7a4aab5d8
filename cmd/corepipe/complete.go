package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corepipe/corepipe"
)

// completionTimeout bounds how long a shell waits on the API for a TAB.
const completionTimeout = 2 * time.Second

// completeCrashIDs offers the recent crashes' IDs, each with its title, the
// way kubectl completes the names of resources: from the API at --server
// (or COREPIPE_SERVER). An API that cannot answer offers nothing.
func completeCrashIDs(cf *clientFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		// Completion runs no pre-run hooks: the environment is read here.
		if err := fromEnv(cmd); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := cf.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		ctx, cancel := context.WithTimeout(ctx, completionTimeout)
		defer cancel()
		crashes, _, err := c.Crashes(ctx, corepipe.CrashFilter{Limit: 50})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var ids []cobra.Completion
		for _, r := range crashes {
			if strings.HasPrefix(r.ID, toComplete) {
				ids = append(ids, cobra.CompletionWithDesc(r.ID, strings.ReplaceAll(r.Title, "\n", " ")))
			}
		}
		return ids, cobra.ShellCompDirectiveNoFileComp
	}
}
