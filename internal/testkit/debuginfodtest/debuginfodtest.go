// Package debuginfodtest runs elfutils' own debuginfod server (Debian's
// debuginfod package) for tests that talk to it from Go. elfutils 0.188
// has no listen-address option: the server listens on every interface, so
// the test re-runs itself in a network namespace of its own (unshare -n),
// whose loopback is all the server can be reached on.
package debuginfodtest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// netnsEnv marks the re-run of a test inside its network namespace.
const netnsEnv = "COREPIPE_TEST_NETNS"

// InNetns reports whether this process is the re-run of the calling test
// inside a network namespace of its own, with loopback up. Called outside,
// it skips the test when it cannot run (not root, tools missing), else
// re-runs it (with env added to its environment), reports the re-run's
// failure, and returns false: the caller then returns.
func InNetns(t *testing.T, env ...string) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("loopback up: %v\n%s", err, out)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIP: unshare -n needs root")
	}
	for _, tool := range []string{"debuginfod", "unshare", "ip", "objcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s is not installed (scripts/install-tools.sh installs Debian's debuginfod package)", tool)
		}
	}
	cmd := exec.Command("unshare", "-n", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(append(os.Environ(), netnsEnv+"="+t.Name()), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in its network namespace: %v\n%s", t.Name(), err, out)
	}
	return false
}

// Start runs debuginfod on the files of dir (-F) on port, in the test's
// network namespace (see InNetns), and returns its URL once it serves
// the debug file of GNU build ID id. The server stops with the test, or
// earlier with stop.
func Start(t *testing.T, dir string, port int, id string) (url string, stop func()) {
	t.Helper()
	if os.Getenv(netnsEnv) != t.Name() {
		t.Fatal("debuginfodtest.Start outside its network namespace: call InNetns first")
	}
	state := t.TempDir()
	log, err := os.Create(filepath.Join(state, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("debuginfod", "-F", dir, "-p", fmt.Sprint(port), "-d", filepath.Join(state, "db.sqlite"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop = func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)
	url = fmt.Sprintf("http://127.0.0.1:%d", port)
	// The server indexes dir after it starts listening.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/buildid/" + id + "/debuginfo")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, stop
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("debuginfod exited:\n%s", b)
		case <-time.After(50 * time.Millisecond):
		}
	}
	b, _ := os.ReadFile(log.Name())
	t.Fatalf("debuginfod did not serve gnu:%s within 60s:\n%s", id, b)
	return "", nil
}
