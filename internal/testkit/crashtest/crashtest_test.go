package crashtest

import (
	"os"
	"strings"
	"testing"

	"syscall"
)

func TestCoreOfGoNilDereference(t *testing.T) {
	exe := BuildGo(t, Program{Files: map[string]string{"main.go": `package main

type T struct{ x int }

func main() {
	var p *T
	println(p.x)
}
`}})
	core, res := Core(t, exe, nil)
	if res.Signal != syscall.SIGABRT {
		t.Errorf("GOTRACEBACK=crash should end in SIGABRT, got %s", res.Describe())
	}
	if !strings.Contains(res.Stderr, "invalid memory address or nil pointer dereference") {
		t.Errorf("stderr lacks the runtime's panic:\n%s", res.Stderr)
	}
	st, err := os.Stat(core)
	if err != nil || st.Size() < 4096 {
		t.Fatalf("core %s: %v", core, err)
	}
	b := make([]byte, 18)
	f, _ := os.Open(core)
	defer f.Close()
	f.Read(b)
	if string(b[:4]) != "\x7fELF" || b[16] != 4 {
		t.Fatalf("%s is not an ELF core: % x", core, b)
	}
}
