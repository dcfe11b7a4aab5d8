package toolcache

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPinsMatchScripts holds the versions the Go helpers look for to the
// ones the scripts build: a bump of one alone would make every test of that
// tool skip (or fail in CI) for a binary never installed.
func TestPinsMatchScripts(t *testing.T) {
	for _, tc := range []struct{ script, variable, want string }{
		{"install-minio.sh", "minio_version", MinioVersion},
		{"install-tools.sh", "helm_version", HelmVersion},
		{"install-tools.sh", "mc_version", McVersion},
		{"install-kube.sh", "etcd_version", EtcdVersion},
		{"install-kube.sh", "kube_version", KubeAPIServerVersion},
	} {
		b, err := os.ReadFile(filepath.Join(moduleRoot(t), "scripts", tc.script))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^` + tc.variable + `=(\S+)$`).FindSubmatch(b)
		if m == nil {
			t.Errorf("%s: no %s=", tc.script, tc.variable)
			continue
		}
		if got := string(m[1]); got != tc.want {
			t.Errorf("%s builds %s %s, the Go helpers look for %s", tc.script, tc.variable, got, tc.want)
		}
	}
}

// moduleRoot walks up from the package's directory to go.mod's.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func TestDir(t *testing.T) {
	t.Setenv("COREPIPE_CACHE", "")
	t.Setenv("HOME", "/home/dev")
	if got := Path("etcd", "v3.7.3"); got != "/home/dev/.cache/corepipe/etcd-v3.7.3/etcd" {
		t.Errorf("without COREPIPE_CACHE: %s", got)
	}
	t.Setenv("COREPIPE_CACHE", "/var/cache/ci")
	if got := Path("helm", "v3.22.0"); got != "/var/cache/ci/helm-v3.22.0/helm" {
		t.Errorf("with COREPIPE_CACHE: %s", got)
	}
}

// TestFindMissing runs TestHelperFind in a child test binary, since a skip
// or a failure ends the test that calls Find.
func TestFindMissing(t *testing.T) {
	for _, tc := range []struct {
		ci   string
		want string
	}{
		{"", "--- SKIP: TestHelperFind"},
		{"true", "--- FAIL: TestHelperFind"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFind$", "-test.v")
		cmd.Env = append(os.Environ(), "TOOLCACHE_HELPER=1", "CI="+tc.ci, "COREPIPE_CACHE="+t.TempDir())
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "scripts/install-tools.sh") {
			t.Errorf("CI=%q: want %q and how to install, got\n%s", tc.ci, tc.want, out)
		}
	}
}

func TestHelperFind(t *testing.T) {
	if os.Getenv("TOOLCACHE_HELPER") == "" {
		t.Skip("run by TestFindMissing")
	}
	Find(t, "etcd", EtcdVersion)
	t.Log("found")
}
