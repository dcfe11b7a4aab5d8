package gotrace_test

import (
	"strings"
	"testing"

	"github.com/corepipe/corepipe/gotrace"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// parked is a program that parks n goroutines, three stacks deep, then
// panics: the traceback of a leaking service.
const parked = `package main

import (
	"os"
	"strconv"
	"sync"
)

//go:noinline
func wait(ch chan int, wg *sync.WaitGroup) { wg.Done(); <-ch }

//go:noinline
func worker(ch chan int, wg *sync.WaitGroup) { wait(ch, wg) }

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	ch := make(chan int)
	var wg sync.WaitGroup
	wg.Add(n)
	for range n {
		go worker(ch, &wg)
	}
	wg.Wait()
	panic("leaked " + os.Args[1])
}
`

// BenchmarkParse100k parses what the runtime printed for a panic with
// 100 000 parked goroutines (GOTRACEBACK=all): time and allocations per
// parse, and the traceback's size.
func BenchmarkParse100k(b *testing.B) {
	exe := crashtest.BuildGo(b, crashtest.Program{Files: map[string]string{"main.go": parked}})
	out := crashtest.Stderr(b, exe, "all", "100000")
	if n := strings.Count(out, "\ngoroutine "); n < 100000 {
		b.Fatalf("traceback has %d goroutines", n)
	}
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r, err := gotrace.Parse(out, gotrace.Options{})
		if err != nil || len(r.Goroutines) < 100000 {
			b.Fatalf("parse: %v, %d goroutines", err, len(r.Goroutines))
		}
	}
}
