// Package deptest holds the layout's import lines in tests, the way
// Tailscale's tstest/deptest does: a DepChecker reads `go list -json` and
// says, for every banned dependency it finds, why it is banned.
package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// DepChecker bans dependencies of a set of packages.
type DepChecker struct {
	// Package is a `go list` pattern ("./api/...", "."), relative to the
	// test's directory.
	Package string
	// GOOS and GOARCH are the platform whose build is checked; empty means
	// the host's.
	GOOS, GOARCH string
	// BadDeps maps an import path, or a pattern "path/..." meaning the path
	// and every package below it, to why no package of Package may depend
	// on it, directly or through another package.
	BadDeps map[string]string
	// Exempt lists the packages of Package (import paths or "path/..."
	// patterns) that the rule does not hold for.
	Exempt []string
}

// Check fails t for each banned dependency.
func (c DepChecker) Check(t testing.TB) {
	t.Helper()
	vs, err := c.Violations()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Error(v)
	}
}

// Violations lists the banned dependencies of c.Package, one line each:
// "pkg depends on dep: why".
func (c DepChecker) Violations() ([]string, error) {
	pkgs, err := c.list()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pkgs {
		if slices.ContainsFunc(c.Exempt, func(e string) bool { return match(e, p.ImportPath) }) {
			continue
		}
		for _, dep := range p.Deps {
			for bad, why := range c.BadDeps {
				if match(bad, dep) {
					out = append(out, fmt.Sprintf("%s depends on %s: %s", p.ImportPath, dep, why))
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

type listed struct {
	ImportPath string
	Deps       []string
	Error      *struct{ Err string }
}

func (c DepChecker) list() ([]listed, error) {
	if c.Package == "" {
		return nil, errors.New("deptest: no package to check")
	}
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Deps,Error", c.Package)
	cmd.Env = os.Environ()
	if c.GOOS != "" {
		cmd.Env = append(cmd.Env, "GOOS="+c.GOOS)
	}
	if c.GOARCH != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+c.GOARCH)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w\n%s", c.Package, err, stderr.Bytes())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list %s: %w", c.Package, err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("go list %s: %s: %s", c.Package, p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	// A pattern that matches nothing would pass every rule.
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("go list %s: no packages", c.Package)
	}
	return pkgs, nil
}

// match reports whether path is pattern, or below it for "x/...".
func match(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}
