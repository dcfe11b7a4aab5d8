// A service that imports crashout and crashes the way its first argument
// says: a panic in a goroutine of its own, concurrent map writes (a
// runtime throw), or not at all ("exit", or "wait" until killed).
package main

import (
	"fmt"
	"os"
	"time"

	_ "github.com/corepipe/corepipe/crashout"
)

type handler struct{ routes map[string]*route }
type route struct{ name string }

//go:noinline
func (h *handler) serve(path string) string { return h.routes[path].name }

//go:noinline
func hammer(m map[int]int) {
	for i := 0; ; i++ {
		m[i%8] = i
	}
}

func main() {
	fmt.Fprintln(os.Stderr, `{"level":"info","msg":"started"}`)
	go func() { time.Sleep(time.Hour) }()
	switch os.Args[1] {
	case "panic":
		done := make(chan bool)
		go func() { println((&handler{}).serve("/missing")); done <- true }()
		<-done
	case "mapwrites":
		m := map[int]int{}
		for range 3 {
			go hammer(m)
		}
		hammer(m)
	case "exit":
		os.Exit(0)
	case "wait":
		time.Sleep(time.Hour)
	}
	time.Sleep(time.Second)
}
