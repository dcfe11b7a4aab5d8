package deploy_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/symbols"
)

// buildStage is what a Dockerfile's build stage runs after copying the
// source, as shell commands (RUN flags dropped), and its ARG defaults.
type buildStage struct {
	runs   []string
	args   map[string]string
	stages []string
}

func readDockerfile(t *testing.T, path string) buildStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st := buildStage{args: map[string]string{}}
	var (
		stage   string
		copied  bool
		pending string
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, pending = pending+line, ""
		word, rest, _ := strings.Cut(line, " ")
		switch word {
		case "FROM":
			stage = ""
			if _, name, ok := strings.Cut(rest, " AS "); ok {
				stage = name
				st.stages = append(st.stages, name)
			}
		case "COPY":
			copied = copied || stage == "build" && rest == ". ."
		case "ARG":
			if stage == "build" {
				k, v, _ := strings.Cut(rest, "=")
				st.args[k] = v
			}
		case "RUN":
			if stage == "build" && copied {
				for strings.HasPrefix(rest, "--") {
					_, rest, _ = strings.Cut(rest, " ")
				}
				st.runs = append(st.runs, rest)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestDockerfilesShipStripped runs the build stage of each image's
// Dockerfile as a shell would in the image (no Docker engine here): its
// binaries come out stripped with their debug files split off, a symbols
// stage exports those, and with COREPIPE_SERVER set they are uploaded to a
// running corepipe dev, which then says the shipped binaries are fully
// symbolised.
func TestDockerfilesShipStripped(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: builds corepipe")
	}
	for _, tc := range []struct {
		file string
		bins []string
	}{
		{"Dockerfile", []string{"corepipe"}},
		{"Dockerfile.agent", []string{"corepipe", "corepipe-collector"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			st := readDockerfile(t, tc.file)
			if !strings.Contains(strings.Join(st.stages, " "), "symbols") {
				t.Errorf("stages %v: no symbols stage to export the debug files", st.stages)
			}
			if _, ok := st.args["COREPIPE_SERVER"]; !ok || len(st.runs) < 2 {
				t.Fatalf("build stage: args %v, %d commands after COPY . .: want the build and the upload", st.args, len(st.runs))
			}
			out := t.TempDir()
			run := func(cmd string, env ...string) {
				t.Helper()
				sh := exec.Command("sh", "-ec", strings.ReplaceAll(cmd, "/out", out))
				sh.Dir = ".."
				sh.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
				if b, err := sh.CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", cmd, err, b)
				}
			}
			upload := ""
			for _, cmd := range st.runs {
				if strings.Contains(cmd, "symbols upload") {
					upload = cmd
					continue
				}
				run(cmd)
			}
			if upload == "" {
				t.Fatal("the build stage uploads no symbols")
			}
			for _, b := range tc.bins {
				exe, debug := filepath.Join(out, b), filepath.Join(out, "debug", b+".debug")
				if ok, err := symbols.HasDWARF(exe); ok || err != nil {
					t.Errorf("%s ships with DWARF (%v)", b, err)
				}
				if ok, err := symbols.HasDWARF(debug); !ok || err != nil {
					t.Errorf("%s: no DWARF in %s (%v)", b, debug, err)
				}
				if a, b := crashtest.BuildIDs(t, exe).GNU, crashtest.BuildIDs(t, debug).GNU; a == "" || a != b {
					t.Errorf("%s: build ID %q, its debug file's %q", exe, a, b)
				}
			}

			url := startDev(t, filepath.Join(out, "corepipe"))
			run(upload, "COREPIPE_SERVER="+url, "COREPIPE_TOKEN=")
			for _, b := range tc.bins {
				check := exec.Command(filepath.Join(out, "corepipe"), "symbols", "check", "--server", url, filepath.Join(out, b))
				if msg, err := check.CombinedOutput(); err != nil || !strings.Contains(string(msg), "fully symbolised") {
					t.Errorf("symbols check %s after the image's upload: %v\n%s", b, err, msg)
				}
			}
		})
	}
}

// startDev runs `corepipe dev` (no crash handler) and returns its URL.
func startDev(t *testing.T, corepipe string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, corepipe, "dev", "--data", t.TempDir(), "--listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, u, ok := strings.Cut(sc.Text(), "UI at "); ok {
				urls <- strings.TrimSuffix(strings.TrimSpace(u), "/")
			}
		}
	}()
	select {
	case u := <-urls:
		return u
	case <-time.After(60 * time.Second):
		t.Fatal("corepipe dev printed no URL in 60s")
	}
	return ""
}
