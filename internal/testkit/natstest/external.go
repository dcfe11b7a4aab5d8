package natstest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corepipe/corepipe/internal/testkit/toolcache"
)

// Process is a nats-server running as a separate process, with JetStream on
// a store directory that outlives restarts.
type Process struct {
	tb       testing.TB
	bin      string
	storeDir string
	logPath  string
	confPath string // "" when started without a configuration file
	port     int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// StartExternal starts a nats-server process with JetStream on 127.0.0.1 and
// a free port, and stops it when the test ends. The binary is built from the
// module's own nats-server dependency on first use.
func StartExternal(tb testing.TB) *Process {
	tb.Helper()
	return StartExternalConfig(tb, "")
}

// StartExternalConfig is StartExternal with a nats-server configuration
// file holding conf, none when it is "" (for example an authorization block of users and their
// permissions). The listen address, port and JetStream store stay the
// test's: the command line overrides the file.
func StartExternalConfig(tb testing.TB, conf string) *Process {
	tb.Helper()
	p := newProcess(tb, conf)
	p.start()
	tb.Cleanup(p.Stop)
	return p
}

// URL is the server's client URL; it stays the same across restarts.
func (p *Process) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", p.port) }

// Stop shuts the server down gracefully (SIGTERM) and waits for it to exit.
// Stopping a stopped server does nothing.
func (p *Process) Stop() {
	p.stop(syscall.SIGTERM)
}

// Kill ends the server with SIGKILL, as a crash or an OOM kill would.
func (p *Process) Kill() {
	p.stop(syscall.SIGKILL)
}

// Restart stops the server if it runs and starts it again on the same port
// and store, so JetStream state survives.
func (p *Process) Restart() {
	p.tb.Helper()
	p.Stop()
	p.start()
}

func (p *Process) start() {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.tb.Fatalf("natstest: nats-server log: %v", err)
	}
	defer logFile.Close()
	args := []string{"-js", "-sd", p.storeDir, "-a", "127.0.0.1", "-p", strconv.Itoa(p.port)}
	if p.confPath != "" {
		args = append(args, "-c", p.confPath)
	}
	cmd := exec.Command(p.bin, args...)
	// An *os.File is handed to the child as is: no copying goroutine that
	// could outlive the test.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		p.tb.Fatalf("natstest: start nats-server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // how it ended is in its log
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	if err := waitReady(p.port, exited, 20*time.Second); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		p.cmd = nil
		p.tb.Fatalf("natstest: nats-server on port %d: %v\n%s", p.port, err, p.logTail())
	}
}

func (p *Process) stop(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.tb.Errorf("natstest: nats-server ignored %v for 15s; killing it\n%s", sig, p.logTail())
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// waitReady returns once the server greets a client with INFO. The server
// enables JetStream and recovers its store before it starts accepting
// clients, so a greeting means JetStream is usable.
func waitReady(port int, exited <-chan struct{}, timeout time.Duration) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("exited before accepting connections")
		default:
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if err == nil && strings.HasPrefix(line, "INFO ") {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not accepting connections after %s", timeout)
}

func writeFile(name, content string) error { return os.WriteFile(name, []byte(content), 0o600) }

func (p *Process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	if i := len(b) - 4096; i > 0 {
		b = b[i:]
	}
	return string(bytes.TrimSpace(b))
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("natstest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var build struct {
	once sync.Once
	bin  string
	err  error
}

// serverBinary returns the path of the nats-server binary, building it once
// from the version go.mod requires, so tests run the server the code is
// tested with and need no network beyond the module cache.
func serverBinary(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() { build.bin, build.err = buildServer() })
	if build.err != nil {
		tb.Fatalf("natstest: %v", build.err)
	}
	return build.bin
}

func buildServer() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	version, err := serverVersion(root)
	if err != nil {
		return "", err
	}
	bin := toolcache.Path("nats-server", version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("build nats-server: %w", err)
	}
	// Build beside the target and rename, so that test binaries of other
	// packages building at the same time never run a half-written file.
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "github.com/nats-io/nats-server/v2")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build nats-server: %w\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build nats-server: %w", err)
	}
	return bin, nil
}

// serverVersion is the version of nats-server that go.mod requires, which
// the embedded server is too. (A test binary's build info lists no
// dependencies.)
func serverVersion(root string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}", "github.com/nats-io/nats-server/v2")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("nats-server version: go list: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// repoRoot walks up from the working directory to the directory of go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}
