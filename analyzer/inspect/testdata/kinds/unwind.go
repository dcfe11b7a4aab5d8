// Crashes whose stacks are hard to unwind: a signal that lands in a
// function without a frame, or in a goroutine interrupted at any
// instruction (issue 12 class 2).
package main

import (
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

func init() {
	// SIGTRAP from runtime.Breakpoint, a frameless assembly function.
	kinds["breakpoint"] = func() { breakpoint() }
	// SIGQUIT sent with tgkill to the thread while it blocks in
	// syscall.RawSyscall6, whose callee is frameless assembly.
	kinds["rawsyscall"] = func() {
		runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0))) // the raw syscall keeps its P
		runtime.LockOSThread()
		pid, tid := syscall.Getpid(), syscall.Gettid()
		go func() {
			time.Sleep(20 * time.Millisecond)
			syscall.Tgkill(pid, tid, syscall.SIGQUIT)
		}()
		var fds [2]int
		if err := syscall.Pipe(fds[:]); err != nil {
			panic(err)
		}
		println(rawRead(fds[0]))
	}
	// SIGQUIT sent with kill to the process while goroutines spin: each is
	// interrupted at whatever instruction it was on, and the runtime
	// prints the line of that exact PC.
	kinds["spin"] = func() {
		runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
		for range 2 {
			go spin()
		}
		time.Sleep(30 * time.Millisecond)
		syscall.Kill(syscall.Getpid(), syscall.SIGQUIT)
		time.Sleep(time.Minute)
	}
	// The same with a loop that cannot be preempted: the goroutine is
	// still running when the runtime relays SIGQUIT to its thread, and is
	// printed from the signal's context.
	kinds["spinrunning"] = func() {
		runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
		go spinNosplit()
		time.Sleep(30 * time.Millisecond)
		syscall.Kill(syscall.Getpid(), syscall.SIGQUIT)
		time.Sleep(time.Minute)
	}
}

//go:noinline
func breakpoint() {
	runtime.Breakpoint()
}

//go:noinline
func rawRead(fd int) uintptr {
	var b [1]byte
	n, _, _ := syscall.RawSyscall6(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1, 0, 0, 0)
	return n
}

var (
	stopSpin atomic.Bool
	spun     atomic.Uint64
)

// spin keeps every statement of its loop one instruction long, so that
// the instruction before almost every PC is on another line.
//
//go:noinline
func spin() {
	var a, b, c, d uint64
	for !stopSpin.Load() {
		a++
		b ^= a
		c += b
		d |= c
		a += d
	}
	spun.Add(a + b + c + d)
}

// spinNosplit is spin where asynchronous preemption never stops: the
// compiler marks a nosplit function unsafe for it.
//
//go:nosplit
//go:noinline
func spinNosplit() {
	var a, b, c, d uint64
	for !stopSpin.Load() {
		a++
		b ^= a
		c += b
		d |= c
		a += d
	}
	spun.Add(a + b + c + d)
}
