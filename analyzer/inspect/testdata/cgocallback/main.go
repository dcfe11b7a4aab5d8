// A Go function exported to C, called from C, that crashes: the runtime's
// traceback follows the callback across C back into the Go code that
// called C (issue 12 class 3). The first argument says how it crashes
// (panic, nil) and where it is called from: "thread-…" from a thread that
// C created; with "parked" the callbacks block and another goroutine
// crashes.
package main

/*
#cgo LDFLAGS: -lpthread
#include <pthread.h>
#include <stdint.h>

extern void goCallback(int);

static void __attribute__((noinline)) callFromC(int n) {
	goCallback(n);
}

static void *threadMain(void *arg) {
	callFromC((int)(intptr_t)arg);
	return 0;
}

// callInThread calls back into Go from a thread that C created, which
// has no Go caller at all.
static void callInThread(int n) {
	pthread_t t;
	pthread_create(&t, 0, threadMain, (void *)(intptr_t)n);
	pthread_join(t, 0);
}
*/
import "C"

import (
	"fmt"
	"os"
	"strings"
	"time"
)

var (
	how   string
	block = make(chan int)
)

//export goCallback
func goCallback(n C.int) {
	crash(int(n))
}

type config struct{ retries int }

//go:noinline
func crash(n int) {
	switch how {
	case "panic":
		panic(fmt.Sprintf("callback %d failed", n))
	case "nil":
		var c *config
		println(c.retries + n)
	case "parked":
		<-block
	}
}

//go:noinline
func callC(n int) {
	C.callFromC(C.int(n))
}

//go:noinline
func callThread(n int) {
	C.callInThread(C.int(n))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cgocallback [thread-]panic|nil, or parked")
		os.Exit(2)
	}
	var inThread bool
	how, inThread = strings.CutPrefix(os.Args[1], "thread-")
	switch {
	case how == "parked":
		// The callbacks block; another goroutine crashes.
		go callC(7)
		go callThread(8)
		time.Sleep(50 * time.Millisecond)
		panic("callbacks parked")
	case inThread:
		callThread(7)
	}
	callC(7)
}
