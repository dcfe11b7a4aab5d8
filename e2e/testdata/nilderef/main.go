// A nil pointer dereference in an inlined method inside a frameless leaf,
// three calls deep, with goroutines parked in every common way.
package main

import (
	"os"
	"sync"
	"time"
)

type config struct{ retries int }

type server struct{ cfg *config }

func (s *server) retries() int { return s.cfg.retries }

//go:noinline
func handle(s *server) int { return s.retries() + 1 }

//go:noinline
func serve(s *server) int { return handle(s) * 2 }

func main() {
	var mu sync.Mutex
	mu.Lock()
	ch := make(chan int)
	for range 3 {
		go func() { <-ch }()
	}
	go func() { select {} }()
	go func() { mu.Lock() }()
	go func() { time.Sleep(time.Hour) }()
	time.Sleep(50 * time.Millisecond)
	os.Exit(serve(&server{}))
}
