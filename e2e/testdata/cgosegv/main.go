// A C function called through cgo writes through a null pointer.
package main

/*
static void crash_in_c(int *p) {
	*(volatile int *)p = 42;
}
*/
import "C"

import "time"

//go:noinline
func callC() {
	C.crash_in_c(nil)
}

func main() {
	ch := make(chan int)
	go func() { <-ch }()
	time.Sleep(20 * time.Millisecond)
	callC()
}
