// Every goroutine waits for another: main for a result nobody sends, a
// worker for a lock nobody releases.
package main

import "sync"

func main() {
	var mu sync.Mutex
	results := make(chan int)
	mu.Lock()
	go func() {
		mu.Lock()
		results <- 1
	}()
	<-results
	<-results
}
