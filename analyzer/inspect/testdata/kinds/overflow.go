package main

import (
	"fmt"
	"runtime/debug"
)

// Stack overflows of other shapes than a plain self-recursive main.recurse:
// on another goroutine, through a Stringer that formats itself (fmt's frames
// in every cycle), through mutual recursion with an inlined helper, and
// through a closure.
func init() {
	kinds["overflow-goroutine"] = func() {
		debug.SetMaxStack(16 << 20)
		done := make(chan int)
		go func() { done <- recurse(0) }()
		println(<-done)
	}
	kinds["overflow-stringer"] = func() {
		debug.SetMaxStack(16 << 20)
		// fmt allocates: no collection may be running on another
		// thread's system stack when the stack overflows.
		debug.SetGCPercent(-1)
		println(fmt.Sprint(selfFormatting{}))
	}
	kinds["overflow-mutual"] = func() {
		debug.SetMaxStack(16 << 20)
		println(ping(0))
	}
	kinds["overflow-closure"] = func() {
		debug.SetMaxStack(16 << 20)
		var f func(int) int
		f = func(n int) int { return f(n+1) + 1 }
		println(f(0))
	}
}

// selfFormatting formats itself with %v, which calls String again.
type selfFormatting struct{ depth int }

func (s selfFormatting) String() string { return fmt.Sprintf("%v", selfFormatting{s.depth + 1}) }

//go:noinline
func ping(n int) int { return pong(step(n)) + 1 }

//go:noinline
func pong(n int) int { return ping(step(n)) + 1 }

// step is inlined into ping and pong.
func step(n int) int { return n + 1 }
