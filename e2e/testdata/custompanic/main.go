// A panic with a message of the program's own, two calls deep.
package main

import (
	"fmt"
	"time"
)

type order struct{ id int }

//go:noinline
func lookup(id int) *order {
	panic(fmt.Sprintf("custom failure: order %d not found", id))
}

//go:noinline
func process(ids []int) int {
	n := 0
	for _, id := range ids {
		n += lookup(id).id
	}
	return n
}

func main() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		for {
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	println(process([]int{42, 43}))
	close(done)
}
