package inspect

import (
	"bytes"
	"context"
	"log/slog"
	"reflect"
	"regexp"
	"strconv"
	"testing"

	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// parkedKinds parks goroutines in every way a program does (a channel a
// few frames deep and one 120 frames deep, a select, a mutex, a sync.Cond, a WaitGroup, a timer, a
// generic function, a method value, a deferred call, pprof labels, a
// locked thread, a read on a pipe, runtime.Gosched in a loop), after
// thousands of goroutines have exited, which leaves dead entries between
// the live ones in allgs; then panics.
const parkedKinds = `package main

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"
)

var (
	block = make(chan struct{})
	mu    sync.Mutex
	cond  = sync.NewCond(&sync.Mutex{})
	wg    sync.WaitGroup
)

//go:noinline
func ping(n int) {
	if n == 0 {
		<-block
	}
	pong(n - 1)
}

//go:noinline
func pong(n int) { ping(n) }

//go:noinline
func wait[T any](ch chan T) T { return <-ch }

type server struct{ ch chan int }

//go:noinline
func (s *server) serve() { <-s.ch }

//go:noinline
func deferred() {
	defer func() { <-block }()
}

func main() {
	var exited sync.WaitGroup
	for range 3000 {
		exited.Add(1)
		go func() { exited.Done() }()
	}
	exited.Wait()
	mu.Lock()
	wg.Add(1)
	r, w, _ := os.Pipe()
	defer w.Close()
	var started sync.WaitGroup
	start := func(f func()) {
		started.Add(1)
		go func() { started.Done(); f() }()
	}
	for i := range 2500 {
		switch i % 10 {
		case 0:
			start(func() { ping(i % 5) })
		case 1:
			start(func() {
				select {
				case <-block:
				case <-time.After(time.Hour):
				}
			})
		case 2:
			start(func() { mu.Lock() })
		case 3:
			start(func() { cond.L.Lock(); cond.Wait() })
		case 4:
			start(func() { wg.Wait() })
		case 5:
			start(func() { time.Sleep(time.Hour) })
		case 6:
			start(func() { wait(make(chan string)) })
		case 7:
			s := &server{make(chan int)}
			start(s.serve)
		case 8:
			start(deferred)
		default:
			start(func() { select {} })
		}
	}
	start(func() {
		pprof.Do(context.Background(), pprof.Labels("job", "labelled"), func(context.Context) { <-block })
	})
	start(func() { runtime.LockOSThread(); <-block })
	start(func() { ping(60) }) // deeper than the walk goes
	start(func() { var b [1]byte; r.Read(b[:]) })
	for range 2 {
		start(func() {
			for {
				runtime.Gosched()
			}
		})
	}
	started.Wait()
	time.Sleep(300 * time.Millisecond)
	panic("parked in every way")
}
`

// TestSchedWalk: goroutines read from allgs and walked from the function
// table are reported as the runtime printed them, exactly as when delve
// lists and unwinds every one, each once although dead goroutines lie
// between the live ones, and most of them without delve.
func TestSchedWalk(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{{"exe", nil}, {"pie", []string{"-buildmode=pie"}}} {
		t.Run(tc.name, func(t *testing.T) { testSchedWalk(t, tc.flags) })
	}
}

func testSchedWalk(t *testing.T, flags []string) {
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": parkedKinds}, Flags: flags})
	core, res := crashtest.Core(t, exe, nil)
	var log bytes.Buffer
	opts := Options{Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	r, err := Inspect(context.Background(), core, exe, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`msg="goroutines listed" "from allgs"=(\d+) "by delve"=(\d+)`).FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no count of the goroutines listed in the log:\n%s", log.String())
	}
	direct, _ := strconv.Atoi(m[1])
	t.Logf("%s goroutines read from allgs, %s by delve", m[1], m[2])
	if direct < 2400 {
		t.Errorf("%s goroutines read from allgs, %s by delve: want nearly all from allgs", m[1], m[2])
	}
	seen := map[int64]bool{}
	for _, g := range r.Goroutines {
		if seen[g.ID] {
			t.Errorf("goroutine %d reported twice", g.ID)
		}
		seen[g.ID] = true
	}
	agree(t, r, res.Stderr)

	delveListsAll = true
	defer func() { delveListsAll = false }()
	byDelve, err := Inspect(context.Background(), core, exe, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(byDelve.Goroutines) != len(r.Goroutines) {
		t.Fatalf("%d goroutines, %d when delve lists them", len(r.Goroutines), len(byDelve.Goroutines))
	}
	for i := range r.Goroutines {
		if !reflect.DeepEqual(r.Goroutines[i], byDelve.Goroutines[i]) {
			t.Errorf("goroutine %d:\n%+v\nwhen delve lists and unwinds it:\n%+v", r.Goroutines[i].ID, r.Goroutines[i], byDelve.Goroutines[i])
		}
	}
}
