package corepipe

import (
	"strings"
	"testing"
)

func TestOwners(t *testing.T) {
	o, err := ParseOwners(strings.NewReader(`# owners
github.com/acme/shop/            team-shop
github.com/acme/shop/refund*     ana
internal/cache/*.go              team-platform
github.com/lib/pq/               team-db
`))
	if err != nil {
		t.Fatal(err)
	}
	crash := func(frames ...Frame) *Report {
		return &Report{Go: &GoInfo{MainModule: "github.com/acme/shop"}, CrashingGoroutine: 1,
			Goroutines: []Goroutine{{ID: 1, Frames: frames}}}
	}
	for _, tc := range []struct {
		name string
		r    *Report
		want string
	}{
		{"a package of the module", crash(Frame{Function: "runtime.sigpanic"}, Frame{Function: "github.com/acme/shop/cart.(*Cart).Add"}), "team-shop"},
		{"the last matching rule wins", crash(Frame{Function: "github.com/acme/shop/refund.Issue"}), "ana"},
		{"a glob on the file's end", crash(Frame{Function: "main.get", File: "/src/shop/internal/cache/lru.go"}), "team-platform"},
		{"an application frame first", crash(Frame{Function: "github.com/lib/pq.(*conn).query"}, Frame{Function: "github.com/acme/shop/cart.Save"}), "team-shop"},
		{"else the innermost that a rule matches", crash(Frame{Function: "runtime.throw"}, Frame{Function: "github.com/lib/pq.(*conn).query"}, Frame{Function: "main.main"}), "team-db"},
		{"nobody", crash(Frame{Function: "main.main", File: "/src/shop/main.go"}), ""},
		{"a summary's top frames", &Report{TopFrames: []Frame{{Function: "github.com/acme/shop/refund.Issue"}}}, "ana"},
	} {
		if got := o.Owner(tc.r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	var none *OwnerRules
	if got := none.Owner(crash(Frame{Function: "main.main"})); got != "" {
		t.Errorf("no rules: %q", got)
	}
	for _, bad := range []string{"pattern", "a b c", "[* team", "x team\x1b"} {
		if _, err := ParseOwners(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
