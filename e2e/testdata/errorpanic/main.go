// A panic with an error value wrapping another.
package main

import (
	"fmt"
	"os"
)

//go:noinline
func loadConfig(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(fmt.Errorf("load config: %w", err))
	}
	return b
}

func main() { println(len(loadConfig("/nonexistent/corepipe.yaml"))) }
