package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version, revision and Go release this binary was built from",
		Example: `  corepipe version
  kubectl exec -n corepipe ds/crashes-corepipe-agent -- corepipe version`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi, _ := debug.ReadBuildInfo()
			return writeVersion(cmd.OutOrStdout(), bi)
		},
	}
}

// writeVersion prints what `go build` recorded in the binary: the module's
// version ("(devel)" for a build from a work tree), the VCS revision and
// its time, and the Go release. bi may be nil.
func writeVersion(w io.Writer, bi *debug.BuildInfo) error {
	version, goVersion := "unknown", runtime.Version()
	settings := map[string]string{}
	if bi != nil {
		version, goVersion = bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	if version == "" {
		version = "unknown"
	}
	revision := settings["vcs.revision"]
	switch {
	case revision == "":
		revision = "unknown (built without VCS information)"
	case settings["vcs.modified"] == "true":
		revision += " (with uncommitted changes)"
	}
	if t := settings["vcs.time"]; t != "" {
		revision += ", committed " + t
	}
	_, err := fmt.Fprintf(w, "corepipe %s\nrevision: %s\ngo:       %s %s/%s\n", version, revision, goVersion, runtime.GOOS, runtime.GOARCH)
	return err
}
