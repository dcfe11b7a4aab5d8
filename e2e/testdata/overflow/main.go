// Unbounded recursion; a smaller maximum stack keeps the core small while
// still leaving hundreds of thousands of frames.
package main

import "runtime/debug"

type node struct{ next *node }

//go:noinline
func (n *node) depth() int { return n.next.depth() + 1 }

func main() {
	debug.SetMaxStack(16 << 20)
	n := &node{}
	n.next = n
	println(n.depth())
}
