package testkit

import "testing"

// Table requires f to map every input in cases to its wanted output: the
// table test of a pure function, name being how a failure calls it.
func Table[In, Out comparable](tb testing.TB, name string, f func(In) Out, cases map[In]Out) {
	tb.Helper()
	for in, want := range cases {
		if got := f(in); got != want {
			tb.Errorf("%s(%#v) = %#v, want %#v", name, in, got, want)
		}
	}
}
