package testkit

import (
	"fmt"
	"strings"
	"testing"
)

// errorsTB records an Errorf instead of failing a real test.
type errorsTB struct {
	testing.TB
	errs []string
}

func (e *errorsTB) Helper() {}
func (e *errorsTB) Errorf(format string, a ...any) {
	e.errs = append(e.errs, fmt.Sprintf(format, a...))
}

func TestTable(t *testing.T) {
	e := &errorsTB{TB: t}
	Table(e, "strings.ToUpper", strings.ToUpper, map[string]string{"a": "A", "b": "b"})
	if len(e.errs) != 1 || e.errs[0] != `strings.ToUpper("b") = "B", want "b"` {
		t.Errorf("Table failed with %q, want the one wrong case", e.errs)
	}
}
