package corepipe

import "testing"

func TestInApp(t *testing.T) {
	withModule := &Report{Go: &GoInfo{MainModule: "github.com/acme/shop"}}
	stripped := &Report{}
	for _, tc := range []struct {
		fn                 string
		inModule, inNoMain bool
	}{
		{"main.main", true, true},
		{"main.(*server).retries", true, true},
		{"main.main.func1", true, true},
		{"github.com/acme/shop/cart.(*Cart).Add", true, true},
		{"github.com/acme/shop.Run", true, true},
		{"github.com/acme/shopping.Run", false, true},
		{"github.com/lib/pq.(*conn).Query", false, true},
		{"runtime.sigpanic", false, false},
		{"panic", false, false},
		{"net/http.(*conn).serve", false, false},
		{"sync.(*Mutex).Lock", false, false},
	} {
		f := Frame{Function: tc.fn}
		if got := withModule.InApp(f); got != tc.inModule {
			t.Errorf("%s in github.com/acme/shop: %v", tc.fn, got)
		}
		if got := stripped.InApp(f); got != tc.inNoMain {
			t.Errorf("%s without a main module: %v", tc.fn, got)
		}
	}
}
