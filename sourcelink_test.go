package corepipe

import "testing"

func TestSourceLinks(t *testing.T) {
	links, err := ParseSourceLinks([]string{
		"git.example.com/team/=https://git.example.com/team/{repo}/src/{rev}/{path}#L{line}",
		"github.com/acme/=https://ghe.acme.internal/acme/{repo}/blob/{rev}/{path}#L{line}",
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &Report{Go: &GoInfo{MainModule: "github.com/shop/cart/v2", VCSRevision: "0123456789abcdef"}}
	for _, tc := range []struct {
		file string
		want string
	}{
		// -trimpath: the file is its module path.
		{"github.com/shop/cart/v2/api/server.go", "https://github.com/shop/cart/blob/0123456789abcdef/v2/api/server.go#L42"},
		// An absolute path of the main module, found by its name.
		{"/home/ci/work/cart/api/server.go", "https://github.com/shop/cart/blob/0123456789abcdef/v2/api/server.go#L42"},
		// A dependency from the module cache, at its version; a pseudo-version at its commit.
		{"/root/go/pkg/mod/gitlab.com/grp/lib@v1.4.0/x/y.go", "https://gitlab.com/grp/lib/-/blob/v1.4.0/x/y.go#L42"},
		{"github.com/!burnt!sushi/toml@v0.0.0-20261101120000-abcdefabcdef/decode.go", "https://github.com/BurntSushi/toml/blob/abcdefabcdef/decode.go#L42"},
		// Configured templates, the longest prefix first.
		{"/go/pkg/mod/git.example.com/team/billing@v2.0.1/charge.go", "https://git.example.com/team/billing/src/v2.0.1/charge.go#L42"},
		{"github.com/acme/tool@v1.0.0/main.go", "https://ghe.acme.internal/acme/tool/blob/v1.0.0/main.go#L42"},
		// No link: the standard library, an unknown host, a path outside the module.
		{"/usr/local/go/src/runtime/panic.go", ""},
		{"runtime/panic.go", ""},
		{"example.org/x@v1.0.0/y.go", ""},
		{"/srv/other/main.go", ""},
	} {
		if got := links.Link(r, Frame{File: tc.file, Line: 42}); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.file, got, tc.want)
		}
	}
	// Without a revision, the main module's files have no link.
	norev := &Report{Go: &GoInfo{MainModule: "github.com/shop/cart"}}
	if got := links.Link(norev, Frame{File: "github.com/shop/cart/main.go", Line: 1}); got != "" {
		t.Errorf("without a revision: %s", got)
	}
	if got := links.Link(r, Frame{File: "github.com/shop/cart/v2/a b?.go", Line: 1}); got != "https://github.com/shop/cart/blob/0123456789abcdef/v2/a%20b%3F.go#L1" {
		t.Errorf("escaping: %s", got)
	}
	for _, bad := range []string{"github.com/acme/", "=https://x/{path}", "github.com/acme/=ftp://x/{path}", "github.com/acme/=https://x/{repo}", "github.com/acme/=javascript:alert(1)//{path}"} {
		if _, err := ParseSourceLinks([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
