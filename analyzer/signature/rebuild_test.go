package signature_test

import (
	"context"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/inspect"
	"github.com/corepipe/corepipe/analyzer/signature"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

const indexBug = `package main

import "os"

//go:noinline
func lookup(xs []int, i int) int { return xs[i] }

//go:noinline
func handle(n int) int { return lookup([]int{1, 2, 3}, n) }

func main() { println(handle(len(os.Args) + 4)) }
`

// The same bug after a refactoring: new code around it, every line moved,
// another index, a closure in the way, built with other flags.
const indexBugMoved = `package main

import (
	"fmt"
	"os"
)

type unrelated struct{ a, b int }

func (u unrelated) String() string { return fmt.Sprint(u.a + u.b) }

//go:noinline
func helper(n int) int { return n * 2 }

//go:noinline
func lookup(xs []int, i int) int {
	// a comment that shifts the line
	return xs[i]
}

//go:noinline
func handle(n int) int {
	f := func() int { return helper(n) }
	_ = f()
	return lookup([]int{1, 2}, n)
}

func main() {
	fmt.Fprintln(os.Stdout, unrelated{1, 2})
	println(handle(len(os.Args) + 6))
}
`

// A different bug in the same place.
const nilMapBug = `package main

//go:noinline
func lookup(m map[int]int, i int) int { m[i] = i; return i }

//go:noinline
func handle(n int) int { return lookup(nil, n) }

func main() { println(handle(1)) }
`

// The same runtime error reached another way.
const indexBugElsewhere = `package main

import "os"

//go:noinline
func lookup(xs []int, i int) int { return xs[i] }

//go:noinline
func render(n int) int { return lookup([]int{1, 2, 3}, n) }

func main() { println(render(len(os.Args) + 4)) }
`

func crashSignature(t *testing.T, src string, flags ...string) (string, *corepipe.Report) {
	t.Helper()
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": src}, Flags: flags})
	core, _ := crashtest.Core(t, exe, nil)
	r, err := inspect.Inspect(context.Background(), core, exe, inspect.Options{})
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return signature.Signature(r), r
}

// TestSignatureAcrossRebuilds crashes real programs: the same bug in two
// builds of different code gets one signature, different bugs get others.
func TestSignatureAcrossRebuilds(t *testing.T) {
	t.Parallel()
	base, r := crashSignature(t, indexBug)
	t.Logf("%s: %s %v", base, signature.Class(r), signature.Frames(r))

	moved, r2 := crashSignature(t, indexBugMoved, "-trimpath", "-gcflags=-l=4")
	if moved != base {
		t.Errorf("the same bug rebuilt: %s (%s %v), want %s", moved, signature.Class(r2), signature.Frames(r2), base)
	}
	pie, _ := crashSignature(t, indexBug, "-buildmode=pie")
	if pie != base {
		t.Errorf("the same bug built as PIE: %s, want %s", pie, base)
	}
	for name, src := range map[string]string{"nil map write": nilMapBug, "index error elsewhere": indexBugElsewhere} {
		if sig, r := crashSignature(t, src); sig == base {
			t.Errorf("%s has the signature of the index bug: %s (%s %v)", name, sig, signature.Class(r), signature.Frames(r))
		}
	}
}
