package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/apitest"
	"github.com/corepipe/corepipe/notify/slack"
)

func TestTriageCommands(t *testing.T) {
	const triager, viewer = "cli-triage-token-012345", "cli-viewer-token-012345"
	srv := apitest.Start(t, triager+" triage ci-bot\n"+viewer+" viewer")
	at := time.Now().UTC().Add(-time.Minute)
	r := &corepipe.Report{
		Schema: corepipe.ReportSchema, ID: corepipe.NewID(at), Status: corepipe.StatusAnalyzed, CapturedAt: at, Node: "node-a",
		Title: "index out of range in main.lookup", Signature: "gocrash/v1:cafe", CrashingGoroutine: 1,
		Panic:      &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: "runtime error: index out of range [3] with length 1"},
		Goroutines: []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{{Function: "main.lookup"}}}},
	}
	srv.Add(t, r, nil, nil, "")
	t.Setenv("COREPIPE_SERVER", srv.URL)
	ctx := context.Background()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runCLI(ctx, &out, nil, args...)
		return out.String(), err
	}

	t.Setenv("COREPIPE_TOKEN", viewer)
	if _, err := run("triage", r.Signature, "--resolve"); !errors.Is(err, corepipe.ErrForbidden) {
		t.Errorf("a viewer resolving: %v", err)
	}
	if out, err := run("ls", "--q", "lookup"); err != nil || !strings.Contains(out, r.ID) {
		t.Errorf("ls --q lookup: %v\n%s", err, out)
	}
	if out, err := run("ls", "--q", "nomatch"); err != nil || strings.Contains(out, r.ID) {
		t.Errorf("ls --q nomatch: %v\n%s", err, out)
	}

	t.Setenv("COREPIPE_TOKEN", triager)
	out, err := run("triage", r.Signature, "--resolve", "--in", "next", "--assign", "team-search", "--comment", "fixed by #7")
	if err != nil || out != "gocrash/v1:cafe: resolved, owned by team-search\n" {
		t.Fatalf("triage --resolve: %v %q", err, out)
	}
	out, err = run("groups", "--assignee", "team-search")
	if err != nil || !strings.Contains(out, "gocrash/v1:cafe  resolved") || !strings.Contains(out, "team-search") {
		t.Errorf("groups --assignee: %v\n%s", err, out)
	}
	if out, err := run("groups", "--status", "ongoing"); err != nil || strings.Contains(out, r.Signature) {
		t.Errorf("groups --status ongoing: %v\n%s", err, out)
	}
	if out, err := run("triage", r.Signature, "--ignore", "--count", "5", "--assign", "-"); err != nil || out != "gocrash/v1:cafe: ignored, owned by nobody\n" {
		t.Errorf("triage --ignore --count: %v %q", err, out)
	}
	for _, args := range [][]string{
		{"triage", r.Signature},
		{"triage", r.Signature, "--resolve", "--ignore"},
		{"triage", r.Signature, "--in", "v2"},
		{"triage", r.Signature, "--resolve", "--until", "1h"},
		{"triage"},
	} {
		if _, err := run(args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestOwnersFlag(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "owners"), filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("# owners\nmain. team-api\n"), 0o600)
	os.WriteFile(bad, []byte("main.\n"), 0o600)
	parse := func(args ...string) (*apiFlags, error) {
		fset := pflag.NewFlagSet("api", pflag.ContinueOnError)
		f := apiFlagsOf(fset)
		if err := fset.Parse(args); err != nil {
			return nil, err
		}
		_, err := f.tokens()
		return f, err
	}
	f, err := parse("--owners", good)
	if err != nil || f.owners.Owner(&corepipe.Report{TopFrames: []corepipe.Frame{{Function: "main.handle"}}}) != "team-api" {
		t.Fatalf("--owners %s: %v", good, err)
	}
	if _, err := parse("--owners", bad); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("--owners of a bad file: %v", err)
	}
	if _, err := parse("--owners", filepath.Join(dir, "missing")); err == nil {
		t.Error("--owners of a missing file: no error")
	}
}

func TestSlackMentionsFlag(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "mentions"), filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("# owner → Slack\nteam-api S0123ABCD\n"), 0o600)
	os.WriteFile(bad, []byte("team-api @team-api\n"), 0o600)
	parse := func(args ...string) (slack.Config, error) {
		fset := pflag.NewFlagSet("notifier", pflag.ContinueOnError)
		f := notifierFlagsOf(fset)
		if err := fset.Parse(args); err != nil {
			return slack.Config{}, err
		}
		return f.slack(nil, nil)
	}
	if cfg, err := parse("--slack-mentions", good); err != nil || cfg.Mentions["team-api"] != "S0123ABCD" {
		t.Fatalf("--slack-mentions %s: %v, %v", good, cfg.Mentions, err)
	}
	if _, err := parse("--slack-mentions", bad); err == nil || !strings.Contains(err.Error(), "--slack-mentions "+bad+": ") || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("--slack-mentions of a bad file: %v", err)
	}
	if _, err := parse("--slack-mentions", filepath.Join(dir, "missing")); err == nil {
		t.Error("--slack-mentions of a missing file: no error")
	}
}
