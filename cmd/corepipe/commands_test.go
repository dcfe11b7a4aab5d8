package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runCLI runs `corepipe args…` as main does, with stdout on out and exec in
// place of syscall.Exec.
func runCLI(ctx context.Context, out io.Writer, exec execFunc, args ...string) error {
	root := newRoot(slog.New(slog.DiscardHandler), exec)
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// The client commands as the tests of client.go call them.
func runLs(ctx context.Context, out io.Writer, args []string) error {
	return runCLI(ctx, out, nil, append([]string{"ls"}, args...)...)
}

func runShow(ctx context.Context, out io.Writer, args []string) error {
	return runCLI(ctx, out, nil, append([]string{"show"}, args...)...)
}

func runFetch(ctx context.Context, out io.Writer, args []string) error {
	return runCLI(ctx, out, nil, append([]string{"fetch"}, args...)...)
}

func runDebug(ctx context.Context, out io.Writer, args []string, exec execFunc) error {
	return runCLI(ctx, out, exec, append([]string{"debug"}, args...)...)
}

// The tests that need what main prints and the status it exits with run
// this test binary again as corepipe.
func init() {
	if os.Getenv("COREPIPE_TEST_MAIN") == "1" {
		os.Args = append([]string{"corepipe"}, os.Args[slices.Index(os.Args, "--")+1:]...)
		main()
	}
}

// runMain runs main with args and env (and no other COREPIPE_ variable).
func runMain(t *testing.T, env []string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COREPIPE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, "COREPIPE_TEST_MAIN=1"), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run corepipe %q: %v", args, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// TestUsageErrors: a mistake on the command line costs one line that says
// what is wrong and where the help is, and exit status 2.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"agent", "--max-core-size", "2X"}, `invalid --max-core-size "2X": want a size like 512M or 2G; see 'corepipe agent --help'`},
		{nil, []string{"dev", "--analysis-memory=lots"}, `invalid --analysis-memory "lots": want a size like 512M or 2G; see 'corepipe dev --help'`},
		{nil, []string{"analyzer", "--workers", "many"}, `invalid --workers "many": want a whole number; see 'corepipe analyzer --help'`},
		{nil, []string{"agent", "--max-backoff", "5"}, `invalid --max-backoff "5": want a duration like 30s, 10m or 2h; see 'corepipe agent --help'`},
		{nil, []string{"analyze", "core", "-o", "yaml"}, `invalid -o "yaml": want json or text; see 'corepipe analyze --help'`},
		{[]string{"COREPIPE_KEEP_FREE=10Q"}, []string{"agent"}, `invalid COREPIPE_KEEP_FREE "10Q": want a size like 512M or 2G; see 'corepipe agent --help'`},
		{[]string{"COREPIPE_INSTALL_HANDLER=yes"}, []string{"dev"}, `invalid COREPIPE_INSTALL_HANDLER "yes": want true or false; see 'corepipe dev --help'`},
		{nil, []string{"agent", "--max-core"}, `unknown flag: --max-core; see 'corepipe agent --help'`},
		{nil, []string{"analyze", "-exe", "prog", "core"}, `unknown flag -exe: long flags take two dashes, --exe; see 'corepipe analyze --help'`},
		{nil, []string{"analyze", "core", "--exe"}, `flag needs an argument: --exe; see 'corepipe analyze --help'`},
		{nil, []string{"analyze"}, `analyze takes one core file, or --log FILE; see 'corepipe analyze --help'`},
		{nil, []string{"analyze", "a", "b"}, `analyze takes one core file, or --log FILE; unexpected ["b"]; see 'corepipe analyze --help'`},
		{nil, []string{"analyze", "--log", "x.log", "core"}, `analyze takes no core with --log; unexpected ["core"]; see 'corepipe analyze --help'`},
		{nil, []string{"ls", "extra"}, `unexpected argument "extra"; see 'corepipe ls --help'`},
		{nil, []string{"show", "../../etc"}, `see 'corepipe show --help'`},
		{nil, []string{"analyzer"}, `--blob and --nats are required; see 'corepipe analyzer --help'`},
		{nil, []string{"analyzer", "--debuginfod", "debuginfod.debian.net"}, `invalid --debuginfod "debuginfod.debian.net": want http(s)://host[:port][/path]; see 'corepipe analyzer --help'`},
		{[]string{"COREPIPE_DEBUGINFOD=http://a:1 ftp://b"}, []string{"dev"}, `invalid COREPIPE_DEBUGINFOD "http://a:1 ftp://b": want http(s)://host[:port][/path]; see 'corepipe dev --help'`},
		{nil, []string{"reanalyze"}, `say which crashes: --id, --signature or --build-id; see 'corepipe reanalyze --help'`},
		{nil, []string{"reanalyze", "--id", "../x"}, `see 'corepipe reanalyze --help'`},
		{[]string{"COREPIPE_BLOB=file:///var/tmp/blobs"}, []string{"api"}, `--nats is required; see 'corepipe api --help'`},
		{nil, []string{"analyse", "core"}, `unknown command "analyse" (did you mean "analyze" or "analyzer"?); see 'corepipe --help'`},
		{nil, []string{"frobnicate"}, `unknown command "frobnicate"; see 'corepipe --help'`},
	} {
		stdout, stderr, status := runMain(t, tc.env, tc.args...)
		if status != exitInvalid || stdout != "" || strings.Count(stderr, "\n") != 1 ||
			!strings.HasPrefix(stderr, "corepipe: ") || !strings.HasSuffix(stderr, tc.want+"\n") {
			t.Errorf("%v corepipe %q: status %d, stdout %q, stderr %q; want status 2 and the one line %q",
				tc.env, tc.args, status, stdout, stderr, tc.want)
		}
	}

	// Without a command: what there is, on stderr, and status 2.
	stdout, stderr, status := runMain(t, nil)
	if status != exitInvalid || stdout != "" || !strings.Contains(stderr, "analyze") || !strings.Contains(stderr, "Usage:") {
		t.Errorf("corepipe without a command: status %d, stdout %q, stderr:\n%s", status, stdout, stderr)
	}
}

// TestFlagsFromEnv: every flag not on the command line reads
// COREPIPE_<FLAG>, and the command line wins.
func TestFlagsFromEnv(t *testing.T) {
	got := func(args ...string) map[string]string {
		t.Helper()
		root := newRoot(slog.New(slog.DiscardHandler), nil)
		cmd, _, err := root.Find(args)
		if err != nil {
			t.Fatal(err)
		}
		values := map[string]string{}
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			cmd.Flags().VisitAll(func(f *pflag.Flag) { values[f.Name] = f.Value.String() })
			return nil
		}
		root.SetArgs(args)
		root.SetOut(io.Discard)
		if err := root.Execute(); err != nil {
			t.Fatalf("corepipe %q: %v", args, err)
		}
		return values
	}
	t.Setenv("COREPIPE_MAX_CORE_SIZE", "1.5G")
	t.Setenv("COREPIPE_NATS", "nats://127.0.0.1:4222")
	t.Setenv("COREPIPE_BLOB", "file:///var/tmp/blobs")
	t.Setenv("COREPIPE_INSTALL_HANDLER", "true")
	t.Setenv("COREPIPE_HANDLER_CHECK", "5s")
	v := got("agent", "--nats", "nats://127.0.0.1:9999")
	for flag, want := range map[string]string{
		"max-core-size": "1536M", "install-handler": "true", "handler-check": "5s",
		"nats": "nats://127.0.0.1:9999", "max-use": "0", "rate-limit": "10",
	} {
		if v[flag] != want {
			t.Errorf("agent --%s = %q, want %q", flag, v[flag], want)
		}
	}
	if v := got("dev", "--max-core-size=2G"); v["max-core-size"] != "2G" || v["ignore-rlimit-core"] != "true" {
		t.Errorf("dev: --max-core-size %q, --ignore-rlimit-core %q", v["max-core-size"], v["ignore-rlimit-core"])
	}
}

// TestSizeFlags: every flag that holds a number of bytes takes the one size
// syntax; none is declared as a bare integer of bytes.
func TestSizeFlags(t *testing.T) {
	want := map[string][]string{
		"dev":      {"max-core-size", "max-use", "keep-free", "analysis-memory", "analysis-max-core"},
		"agent":    {"max-core-size", "max-use", "keep-free"},
		"analyzer": {"analysis-memory", "analysis-max-core"},
	}
	root := newRoot(slog.New(slog.DiscardHandler), nil)
	for _, cmd := range root.Commands() {
		for _, name := range want[cmd.Name()] {
			if f := cmd.Flags().Lookup(name); f == nil || f.Value.Type() != "size" {
				t.Errorf("%s --%s is not a size flag", cmd.Name(), name)
			}
		}
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			switch f.Value.Type() {
			case "int64", "uint64":
				t.Errorf("%s --%s is a bare %s: bytes take the size syntax, counts an int", cmd.Name(), f.Name, f.Value.Type())
			case "size":
				if err := f.Value.Set("64KiB"); err != nil || f.Value.String() != "64K" {
					t.Errorf("%s --%s 64KiB: %v, %s", cmd.Name(), f.Name, err, f.Value)
				}
			}
		})
	}
}

// TestHelp: every command explains itself with examples, on stdout, and
// exits 0.
func TestHelp(t *testing.T) {
	root := newRoot(slog.New(slog.DiscardHandler), nil)
	for _, cmd := range root.Commands() {
		if cmd.Example == "" {
			t.Errorf("corepipe %s --help shows no examples", cmd.Name())
		}
	}
	stdout, stderr, status := runMain(t, nil, "agent", "--help")
	for _, want := range []string{"Examples:", "corepipe agent --spool", "--max-core-size size", "COREPIPE_<FLAG>", "512M"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("corepipe agent --help lacks %q:\n%s", want, stdout)
		}
	}
	if status != 0 || stderr != "" {
		t.Errorf("corepipe agent --help: status %d, stderr %q", status, stderr)
	}
	stdout, _, status = runMain(t, nil, "--help")
	for _, want := range []string{"dev", "agent", "analyzer", "api", "notifier", "analyze", "ls", "show", "fetch", "debug", "version", "completion"} {
		if !regexp.MustCompile(`(?m)^  ` + want + ` `).MatchString(stdout) {
			t.Errorf("corepipe --help does not list %s:\n%s", want, stdout)
		}
	}
	if status != 0 {
		t.Errorf("corepipe --help: status %d", status)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := runCLI(context.Background(), &out, nil, "version"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "corepipe ") || !strings.Contains(out.String(), runtime.Version()) {
		t.Errorf("version:\n%s", out.String())
	}
	out.Reset()
	bi := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Path: "github.com/corepipe/corepipe", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-12-01T20:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	if err := writeVersion(&out, bi); err != nil {
		t.Fatal(err)
	}
	want := "corepipe v1.2.3\nrevision: 0123abcd (with uncommitted changes), committed 2026-12-01T20:00:00Z\ngo:       go1.99 " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if out.String() != want {
		t.Errorf("version:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestCompletion: each shell's script hooks into corepipe's own completion,
// which knows the commands, the flags and their values.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		var out bytes.Buffer
		if err := runCLI(context.Background(), &out, nil, "completion", shell); err != nil {
			t.Fatalf("completion %s: %v", shell, err)
		}
		if !strings.Contains(out.String(), "corepipe") || !strings.Contains(out.String(), "__complete") {
			t.Errorf("completion %s: %d bytes that never call corepipe __complete", shell, out.Len())
		}
		// The shells that are here check the script parses.
		if sh, err := exec.LookPath(shell); err == nil {
			check := exec.Command(sh, "-n")
			if shell == "fish" {
				check.Args = append(check.Args[:1], "--no-execute")
			}
			check.Stdin = &out
			if msg, err := check.CombinedOutput(); err != nil {
				t.Errorf("%s -n on corepipe completion %s: %v\n%s", shell, shell, err, msg)
			}
		}
	}
	complete := func(args ...string) string {
		var out bytes.Buffer
		if err := runCLI(context.Background(), &out, nil, append([]string{"__complete"}, args...)...); err != nil {
			t.Fatalf("__complete %q: %v", args, err)
		}
		return out.String()
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{""}, []string{"dev", "agent", "analyzer", "api", "notifier", "analyze", "ls", "show", "fetch", "debug", "version"}},
		{[]string{"agent", "--max-"}, []string{"--max-core-size", "--max-use", "--max-backoff"}},
		{[]string{"analyze", "core", "-o", ""}, []string{"json", "text"}},
	} {
		got := complete(tc.args...)
		for _, w := range tc.want {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(w) + `(\t|$)`).MatchString(got) {
				t.Errorf("completing %q does not offer %s:\n%s", tc.args, w, got)
			}
		}
	}
}

// TestRootsSideBySide: CLIs built at the same time (tests run several
// runCLI at once) do not race on cobra's package-wide template functions,
// which crashed a run with "concurrent map writes".
func TestRootsSideBySide(t *testing.T) {
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				var out bytes.Buffer
				root := newRoot(slog.New(slog.DiscardHandler), nil)
				root.SetOut(&out)
				root.SetErr(&out)
				root.SetArgs([]string{"analyze", "--help"})
				root.Execute()
			}
		})
	}
	wg.Wait()
}
