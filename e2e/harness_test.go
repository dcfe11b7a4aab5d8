package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// binDir holds corepipe and corepipe-collector built for this test run. Its
// path is short on purpose: it goes into core_pattern, which the kernel caps
// at 127 bytes.
var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			// The tests skip themselves with a message; nothing to build.
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "cpb")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		for _, pkg := range []string{"corepipe", "corepipe-collector"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, pkg), "../cmd/"+pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
				return 1
			}
		}
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

// holdCorePattern takes the machine's core_pattern for the whole test and
// guarantees it is restored when the test ends, passed or failed, even if
// the process under test could not restore it.
func holdCorePattern(t *testing.T) {
	t.Helper()
	crashtest.RequireRoot(t)
	unlock, err := corepattern.Lock()
	if err != nil {
		t.Fatal(err)
	}
	var k corepattern.Kernel
	prev, err := k.Read()
	if err != nil {
		unlock()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer unlock()
		cur, err := k.Read()
		if err != nil {
			t.Error(err)
			return
		}
		if cur != prev {
			t.Errorf("core_pattern left as %+v, want %+v: restoring it", cur, prev)
			if err := k.Write(prev); err != nil {
				t.Errorf("restore core_pattern: %v", err)
			}
		}
	})
}

// proc is a corepipe process under test, its output kept for failures.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testkit.SyncBuffer
	url  chan string
	done chan struct{}
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: args[0], out: &testkit.SyncBuffer{}, url: make(chan string, 1), done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, "corepipe"), args...)
	p.cmd.Env = append(os.Environ(), env...)
	if args[0] == "agent" {
		// This host's own pstore and crash archives are not the tests':
		// an agent reads them on start and removes pstore records it ships.
		// A test that wants them gives the flags, which win.
		p.cmd.Env = append(p.cmd.Env, "COREPIPE_PSTORE=", "COREPIPE_SYSTEMD_PSTORE=", "COREPIPE_KDUMP=")
	}
	p.cmd.Stderr = p.out
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.out, line)
			if i := strings.Index(line, "UI at "); i >= 0 {
				p.url <- strings.TrimSuffix(strings.TrimSpace(line[i+len("UI at "):]), "/")
			}
		}
	}()
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("output of corepipe %s:\n%s", p.name, tail(p.out.String(), 60))
		}
	})
	return p
}

// stop sends SIGTERM, the way Kubernetes stops a pod, and waits.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Errorf("corepipe %s ignored SIGTERM for 20s; killing it", p.name)
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) waitURL(t *testing.T) string {
	t.Helper()
	select {
	case u := <-p.url:
		return u
	case <-p.done:
		t.Fatalf("corepipe %s exited before serving:\n%s", p.name, tail(p.out.String(), 40))
	case <-time.After(60 * time.Second):
		t.Fatalf("corepipe %s printed no UI URL in 60s:\n%s", p.name, tail(p.out.String(), 40))
	}
	return ""
}

// startDev runs `corepipe dev --install-handler` (and extra flags) on a
// fresh data directory,
// the README's run command, and returns it with its UI's URL once the kernel
// runs its collector. The caller holds the core_pattern (holdCorePattern).
func startDev(t *testing.T, env []string, extra ...string) (*proc, string) {
	t.Helper()
	data := crashtest.PatternDir(t, "cpd")
	dev := start(t, env, append([]string{"dev", "--data", data, "--listen", "127.0.0.1:0", "--install-handler",
		"--collector", filepath.Join(binDir, "corepipe-collector")}, extra...)...)
	api := dev.waitURL(t)
	waitHandler(t)
	return dev, api
}

// waitHandler waits until the kernel runs corepipe's collector.
func waitHandler(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s, err := corepattern.Kernel{}.Read()
		if err == nil && corepattern.Owned(s.Pattern) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the crash handler was not installed within 30s")
}

// crashProgram is one real program that crashes, from testdata.
type crashProgram struct {
	name string
	cgo  bool
}

func (c crashProgram) build(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", c.name, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	return crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": string(src)}, Cgo: c.cgo})
}

// waitReport polls the API until the crash of pid has a finished report and
// returns the full report.
func waitReport(t *testing.T, api string, pid int, timeout time.Duration) *corepipe.Report {
	t.Helper()
	return waitReportWhere(t, api, timeout, func(r *corepipe.Report) bool { return r.Process.PID == pid })
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	code, body := get(t, u)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s: %s", u, code, http.StatusText(code), body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, tail(string(body), 5))
	}
}

func get(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, body
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
