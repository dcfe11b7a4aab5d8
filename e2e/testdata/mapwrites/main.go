// Goroutines write one map without a lock until the runtime notices.
package main

//go:noinline
func record(counts map[int]int, worker int) {
	for i := 0; ; i++ {
		counts[i%128] = worker
	}
}

func main() {
	counts := map[int]int{}
	for w := range 4 {
		go record(counts, w)
	}
	record(counts, 4)
}
