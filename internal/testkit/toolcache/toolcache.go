// Package toolcache finds the programs that scripts/install-tools.sh builds
// for the tests (MinIO, mc, nats-server, helm, etcd, kube-apiserver). Each lives
// in $COREPIPE_CACHE/<name>-<version>/<name>: outside the clone, so every
// clone on a machine (a CI runner's fresh checkout too) shares the builds,
// and keyed by version, so a clone only ever runs the version it pins.
package toolcache

import (
	"os"
	"path/filepath"
	"testing"
)

// The pinned versions; scripts/install-*.sh build the same ones (a test
// holds them in step). nats-server's is go.mod's.
const (
	MinioVersion         = "v0.0.0-20260212201848-7aac2a2c5b7c"
	HelmVersion          = "v3.22.0"
	EtcdVersion          = "v3.7.3"
	KubeAPIServerVersion = "v1.37.2"
	// mc runs the chart's MinIO setup script in deploy's tests.
	McVersion = "v0.0.0-20250313080218-cf909e1063a9"
)

// Dir is the cache: $COREPIPE_CACHE, else $HOME/.cache/corepipe, as the
// Makefile and the scripts have it.
func Dir() string {
	if d := os.Getenv("COREPIPE_CACHE"); d != "" {
		return d
	}
	return os.Getenv("HOME") + "/.cache/corepipe"
}

// Path is where the cache holds program name at version.
func Path(name, version string) string {
	return filepath.Join(Dir(), name+"-"+version, name)
}

// Find returns the path of program name at version. When it is missing the
// test is skipped, saying how to install it, except in CI (CI set), where a
// missing tool would silently skip what CI is there to run: there it fails.
func Find(tb testing.TB, name, version string) string {
	tb.Helper()
	bin := Path(name, version)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s %s is not installed at %s: scripts/install-tools.sh installs it (make test runs it)", name, version, bin)
	}
	tb.Skipf("%s %s is not installed at %s: run scripts/install-tools.sh (make tools) to run this test", name, version, bin)
	return ""
}
