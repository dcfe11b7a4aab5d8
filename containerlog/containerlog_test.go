package containerlog_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corepipe/corepipe/containerlog"
	"github.com/corepipe/corepipe/gotrace"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/crilog"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

func decodeAll(t *testing.T, in string) []containerlog.Line {
	t.Helper()
	d := containerlog.NewDecoder(strings.NewReader(in), "")
	var out []containerlog.Line
	for {
		l, err := d.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
}

func TestDecodeCRI(t *testing.T) {
	long := strings.Repeat("a", 20000)
	in := "2026-12-01T10:00:00.000000001Z stdout F hello\n" +
		"2026-12-01T10:00:00.000000002Z stderr P " + long[:16384] + "\n" +
		"2026-12-01T10:00:00.000000003Z stdout F interleaved\n" +
		"2026-12-01T10:00:00.000000004Z stderr P " + long[16384:] + "\n" +
		"2026-12-01T10:00:00.000000005Z stderr F \n" +
		"2026-12-01T10:00:00.000000006Z stderr F panic: boom\n" +
		"2026-12-01T10:00:00.000000007Z stderr P cut at the end"
	got := decodeAll(t, in)
	want := []containerlog.Line{
		{Stream: "stdout", Text: "hello"},
		{Stream: "stderr", Text: long[:16384]},
		{Stream: "stdout", Text: "interleaved"},
		{Stream: "stderr", Text: long[16384:]},
		{Stream: "stderr", Text: "panic: boom"},
		{Stream: "stderr", Text: "cut at the end"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Stream != want[i].Stream || got[i].Text != want[i].Text {
			t.Errorf("line %d = %s %.30q, want %s %.30q", i, got[i].Stream, got[i].Text, want[i].Stream, want[i].Text)
		}
	}
}

func TestDecodeJoinsPartials(t *testing.T) {
	long := strings.Repeat("b", 40000)
	var b strings.Builder
	for i := 0; i < len(long); i += 16384 {
		tag, end := "P", min(i+16384, len(long))
		if end == len(long) {
			tag = "F"
		}
		b.WriteString("2026-12-01T10:00:00Z stderr " + tag + " " + long[i:end] + "\n")
	}
	got := decodeAll(t, b.String())
	if len(got) != 1 || got[0].Text != long {
		t.Fatalf("got %d lines, first %d bytes; want one line of %d", len(got), len(got[0].Text), len(long))
	}
}

func TestDecodeJSONFile(t *testing.T) {
	in := `{"log":"panic: boom\n","stream":"stderr","time":"2026-12-01T10:00:00Z"}` + "\n" +
		`{"log":"part one ","stream":"stderr","time":"2026-12-01T10:00:00Z"}` + "\n" +
		`{"log":"and two\n","stream":"stderr","time":"2026-12-01T10:00:00Z"}` + "\n" +
		`{"log":"out\n","stream":"stdout","time":"2026-12-01T10:00:00Z"}` + "\n"
	got := decodeAll(t, in)
	if len(got) != 3 || got[0].Text != "panic: boom" || got[1].Text != "part one and two" || got[2].Stream != "stdout" {
		t.Fatalf("got %+v", got)
	}
}

// service is a program that logs JSON lines on stdout and stderr, then
// panics in a goroutine of its own.
const service = `package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

type handler struct{ routes map[string]*route }
type route struct{ name string }

//go:noinline
func (h *handler) serve(path string) string { return h.routes[path].name }

func main() {
	for i := range 300 {
		fmt.Printf("{\"level\":\"info\",\"msg\":\"request\",\"n\":%d}\n", i)
		fmt.Fprintf(os.Stderr, "{\"level\":\"warn\",\"msg\":\"slow (%d ms)\",\"pad\":%q}\n", i, strings.Repeat("x", i*10))
	}
	go func() { select {} }()
	done := make(chan bool)
	go func() { println((&handler{}).serve("/missing")); done <- true }()
	<-done
	time.Sleep(time.Second)
}
`

// TestExcerptOfRotatedLog runs a service whose crash is written, as
// containerd would write it, into a log that rotates while it crashes; the
// excerpt holds the crash whole and parses to what the runtime printed.
func TestExcerptOfRotatedLog(t *testing.T) {
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": service}})
	for _, tb := range []string{"", "all"} {
		t.Run("GOTRACEBACK="+tb, func(t *testing.T) {
			dir := t.TempDir()
			run := crilog.Run{
				PodsRoot: filepath.Join(dir, "pods"), ContainersRoot: filepath.Join(dir, "containers"),
				Namespace: "shop", Pod: "web-7d9f", PodUID: "0b8c", Container: "app", ContainerID: "abc123", Attempt: 3,
				MaxSize: 8 << 10,
			}
			w, err := crilog.Open(run)
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), "GOTRACEBACK="+tb)
			cmd.Stdout = w.Stream("stdout")
			cmd.Stderr = io.MultiWriter(w.Stream("stderr"), &stderr)
			if err := cmd.Run(); err == nil {
				t.Fatal("the service did not crash")
			}
			w.Close()

			files, err := containerlog.Files(containerlog.Roots{Pods: run.PodsRoot, Containers: run.ContainersRoot},
				containerlog.Run{Namespace: "shop", Pod: "web-7d9f", PodUID: "0b8c", Container: "app", ContainerID: "containerd://abc123", Attempt: 3})
			if err != nil {
				t.Fatal(err)
			}
			if len(files) < 3 || !strings.HasSuffix(files[0], ".gz") {
				t.Fatalf("files %v: want rotations, gzipped ones first", files)
			}
			ex, err := containerlog.ReadExcerpt(context.Background(), files, containerlog.ExcerptOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !ex.Crash || ex.Format != containerlog.FormatCRI || ex.Truncated {
				t.Fatalf("excerpt: crash %v format %q truncated %v", ex.Crash, ex.Format, ex.Truncated)
			}
			if !bytes.Contains(ex.Text, []byte(`"msg":"slow (299 ms)"`)) || bytes.Contains(ex.Text, []byte(`"msg":"request"`)) {
				t.Errorf("excerpt should hold the program's last stderr lines and none of stdout:\n%.400s", ex.Text)
			}
			want, err := gotraceback.Parse(stderr.String())
			if err != nil {
				t.Fatal(err)
			}
			r, err := gotrace.Parse(string(ex.Text), gotrace.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if diffs := gotraceback.Compare(r, want); len(diffs) > 0 {
				t.Errorf("excerpt's report disagrees with the runtime:\n%s", strings.Join(diffs, "\n"))
			}
		})
	}
}

// TestFilesStayInsideRoot: a link by container ID that points outside the
// pods root is not followed.
func TestFilesStayInsideRoot(t *testing.T) {
	dir := t.TempDir()
	roots := containerlog.Roots{Pods: filepath.Join(dir, "pods"), Containers: filepath.Join(dir, "containers")}
	os.MkdirAll(roots.Pods, 0o755)
	os.MkdirAll(roots.Containers, 0o755)
	secret := filepath.Join(dir, "secret.log")
	os.WriteFile(secret, []byte("panic: secret\n"), 0o600)
	os.Symlink(secret, filepath.Join(roots.Containers, "web_shop_app-abc.log"))
	_, err := containerlog.Files(roots, containerlog.Run{Namespace: "shop", Pod: "web", PodUID: "u", Container: "app", ContainerID: "abc"})
	if err == nil {
		t.Fatal("a link outside the pods root was followed")
	}
	if _, err := containerlog.Files(roots, containerlog.Run{Namespace: "..", Pod: "x", PodUID: "u", Container: "app"}); err == nil {
		t.Fatal("a namespace of .. was accepted")
	}
}

// endless is a reader of n bytes of one byte value, then tail.
type endless struct {
	n    int64
	b    byte
	tail *strings.Reader
	// read counts the bytes read, for a test cancelling half way.
	read atomic.Int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return e.tail.Read(p)
	}
	n := min(int64(len(p)), e.n)
	for i := range p[:n] {
		p[i] = e.b
	}
	e.n -= n
	e.read.Add(n)
	return int(n), nil
}

// TestHostileLogBounded: a 2 GiB line, then a crash, costs a bounded
// amount of memory and still finds the crash.
func TestHostileLogBounded(t *testing.T) {
	tail := "\npanic: after the flood\n\ngoroutine 1 [running]:\nmain.main()\n\t/src/main.go:3 +0x1\n"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ex, err := containerlog.ReadExcerptFrom(context.Background(), &endless{n: 2 << 30, b: 'x', tail: strings.NewReader(tail)}, "", containerlog.ExcerptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if !ex.Crash || !bytes.Contains(ex.Text, []byte("panic: after the flood")) {
		t.Fatalf("the crash after the flood was lost: %.200q", ex.Text)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("reading a 2 GiB line allocated %d MiB", grew>>20)
	}

	ex, err = containerlog.ReadExcerptFrom(context.Background(), &endless{n: 32 << 20, b: 0xff, tail: strings.NewReader("")}, "", containerlog.ExcerptOptions{})
	if err != nil || ex.Crash {
		t.Fatalf("binary garbage: crash %v err %v", ex != nil && ex.Crash, err)
	}
}

// TestExcerptRespectsContext: a read whose context ends stops, even inside
// one line of a gigabyte. (With a timeout the test was flaky under load:
// the timer had not fired when the read began, and the line never let the
// read look at the context again.)
func TestExcerptRespectsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := containerlog.ReadExcerptFrom(ctx, &endless{n: 1 << 30, b: 'x', tail: strings.NewReader("")}, "", containerlog.ExcerptOptions{}); err == nil {
		t.Fatal("a cancelled read went on")
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	r := &endless{n: 1 << 30, b: 'x', tail: strings.NewReader("")}
	go func() {
		for r.read.Load() < 1<<20 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := containerlog.ReadExcerptFrom(ctx, r, "", containerlog.ExcerptOptions{}); err == nil {
		t.Fatal("a read cancelled inside a long line went on")
	}
	if r.n == 0 {
		t.Fatal("a read cancelled inside a long line read it to the end")
	}
}
