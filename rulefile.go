package corepipe

import (
	"bufio"
	"io"
	"strings"
)

// EachRule reads a file of rules written by hand, such as the owners rules
// and the API's tokens: one rule a line, its fields separated by white
// space; blank lines and lines starting with # are skipped. It calls fn with
// each rule's line number and fields, and returns fn's first error, or the
// reader's.
func EachRule(r io.Reader, fn func(line int, fields []string) error) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(n, strings.Fields(line)); err != nil {
			return err
		}
	}
	return sc.Err()
}
