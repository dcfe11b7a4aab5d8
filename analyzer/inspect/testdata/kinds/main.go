// One program per way a Go process dies, chosen by the first argument, so
// that the crash-kind tests build it once and crash it many times.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

type config struct {
	pad     [16]byte
	retries int
}

type server struct{ cfg *config }

//go:noinline
func (s *server) retries() int { return s.cfg.retries }

//go:noinline
func nilField(s *server) int { return s.retries() + 1 }

//go:noinline
func wild() int {
	p := (*int)(unsafe.Pointer(uintptr(0xdeadbeef000)))
	return *p
}

// sigbus maps a file, truncates it and reads past its new end.
//
//go:noinline
func sigbus() byte {
	f, err := os.CreateTemp("", "sigbus")
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	if err := f.Truncate(1 << 16); err != nil {
		panic(err)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, 1<<16, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		panic(err)
	}
	if err := f.Truncate(0); err != nil {
		panic(err)
	}
	return b[1<<15]
}

//go:noinline
func index(s []int, i int) int { return s[i] }

//go:noinline
func nilMap(m map[string]int) { m["k"] = 1 }

//go:noinline
func divide(a, b int) int { return a / b }

//go:noinline
func assert(v any) int { return v.(int) }

type myErr struct {
	code int
	op   string
}

func (e *myErr) Error() string { return fmt.Sprintf("%s failed with code %d", e.op, e.code) }

type state struct{ a, b int }

type named string

type level int

func (l level) String() string { return fmt.Sprintf("level-%d", int(l)) }

//go:noinline
func repanic(recovering bool, again any) {
	defer func() {
		if recovering {
			r := recover()
			if again == nil {
				panic(r)
			}
		}
		panic(again)
	}()
	panic("first failure")
}

//go:noinline
func hammer(m map[int]int, n int) {
	for i := 0; ; i++ {
		m[i%n] = i
	}
}

//go:noinline
func recurse(n int) int {
	return recurse(n+1) + 1
}

func main() {
	ch := make(chan int)
	go func() { <-ch }()
	time.Sleep(10 * time.Millisecond)
	switch os.Args[1] {
	case "nilfield":
		println(nilField(&server{}))
	case "wild":
		println(wild())
	case "sigbus":
		println(sigbus())
	case "index":
		println(index([]int{1, 2, 3}, len(os.Args)+3))
	case "nilmap":
		nilMap(nil)
	case "divide":
		println(divide(1, len(os.Args)-2))
	case "assert":
		println(assert("a string"))
	case "string":
		panic("plain message")
	case "error":
		panic(errors.New("connection reset by peer"))
	case "customerror":
		panic(&myErr{code: 7, op: "flush"})
	case "struct":
		panic(state{1, 2})
	case "named":
		panic(named("typed"))
	case "stringer":
		panic(level(3))
	case "float":
		panic(1.5)
	case "recovered":
		repanic(true, "second failure")
	case "repanicked":
		repanic(true, nil)
	case "nested":
		repanic(false, "second failure")
	case "mapwrites":
		m := map[int]int{}
		for range 4 {
			go hammer(m, 64)
		}
		hammer(m, 64)
	case "deadlock":
		var mu sync.Mutex
		mu.Lock()
		go func() { mu.Lock() }()
		<-make(chan int)
	case "oom":
		// A small address-space limit makes the heap's growth fail the way a
		// real out-of-memory does, without needing the memory.
		lim := syscall.Rlimit{Cur: 1 << 30, Max: 1 << 30}
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, &lim); err != nil {
			panic(err)
		}
		var keep [][]byte
		for {
			keep = append(keep, make([]byte, 256<<20))
		}
	case "overflow":
		debug.SetMaxStack(64 << 20)
		println(recurse(0))
	case "threads":
		debug.SetMaxThreads(12)
		for range 32 {
			go func() {
				runtime.LockOSThread()
				var fds [2]int
				syscall.Pipe(fds[:])
				var b [1]byte
				syscall.Read(fds[0], b[:])
			}()
		}
		time.Sleep(time.Minute)
	default:
		fmt.Fprintln(os.Stderr, "unknown kind", filepath.Base(os.Args[1]))
		os.Exit(2)
	}
}
