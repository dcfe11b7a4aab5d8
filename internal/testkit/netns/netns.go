// Package netns re-runs a test inside a network namespace of its own
// (unshare -n): nothing it starts can reach, or be reached from, any
// network but the namespace's own. Inside, loopback is up and may carry
// more addresses outside 127/8, still only the namespace's: servers that
// refuse loopback addresses (MinIO's distributed mode, in a container)
// listen there.
package netns

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// env marks the re-run of a test inside its namespace.
const env = "COREPIPE_TEST_NETNS"

// Enter reports whether this process is the calling test's re-run inside
// its own network namespace, with loopback up and holding addrs (IPv4
// addresses, which no other namespace has). Called outside, it skips the test when it
// cannot run (not root, no unshare or ip), else re-runs the test with
// extraEnv added, fails it with the re-run's output if that failed, and
// returns false: the caller then returns.
func Enter(t *testing.T, addrs []string, extraEnv ...string) bool {
	t.Helper()
	if os.Getenv(env) == t.Name() {
		run(t, "ip", "link", "set", "lo", "up")
		for _, a := range addrs {
			run(t, "ip", "addr", "add", a+"/32", "dev", "lo")
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIP: unshare -n needs root")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s is not installed", tool)
		}
	}
	args := []string{"-n", os.Args[0], "-test.run=^" + t.Name() + "$", "-test.count=1", "-test.v"}
	if d := testTimeout(); d != "" {
		args = append(args, "-test.timeout="+d)
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(append(os.Environ(), env+"="+t.Name()), extraEnv...)
	out, err := cmd.CombinedOutput()
	t.Logf("%s in its network namespace:\n%s", t.Name(), out)
	if err != nil {
		t.Fatalf("%s in its network namespace: %v", t.Name(), err)
	}
	return false
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// testTimeout is the -test.timeout this process was given, for its re-run.
func testTimeout() string {
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "-test.timeout="); ok {
			return v
		}
	}
	return ""
}
