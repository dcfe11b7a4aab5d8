package kube

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/containerlog"
	"github.com/corepipe/corepipe/internal/testkit/blobtest"
	"github.com/corepipe/corepipe/internal/testkit/crilog"
)

// goPanic is what the runtime prints for a nil dereference with GOTRACEBACK
// unset: the crashing goroutine only.
const goPanic = `panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x10 pc=0x4553a2]

goroutine 1 [running]:
main.(*server).retries(...)
	/src/main.go:5
main.main()
	/src/main.go:9 +0x2
`

// TestTerminationKeepsLogExcerpt: a run that exited 2 with a panic in its
// CRI log (split, rotated) ships with the excerpt stored beside it.
func TestTerminationKeepsLogExcerpt(t *testing.T) {
	dir := t.TempDir()
	roots := containerlog.Roots{Pods: filepath.Join(dir, "pods"), Containers: filepath.Join(dir, "containers")}
	pod := newPod("web", 1, restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 2, "Error", t0))
	w, err := crilog.Open(crilog.Run{PodsRoot: roots.Pods, ContainersRoot: roots.Containers,
		Namespace: pod.Namespace, Pod: pod.Name, PodUID: string(pod.UID), Container: "app",
		ContainerID: cid(1), Attempt: 0, MaxSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	out := w.Stream("stdout")
	errs := w.Stream("stderr")
	for range 20 {
		io.WriteString(out, `{"level":"info","msg":"served"}`+"\n")
		io.WriteString(errs, `{"level":"warn","msg":"slow"}`+"\n")
	}
	io.WriteString(errs, goPanic)
	w.Close()

	blobs, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	startAt(t, Config{Client: fakeClient(pod), Blobs: blobs, LogRoots: roots, LinkWait: time.Second}, rec)
	c := rec.next(t)
	if c.Log == nil || c.Log.Key != corepipe.LogKey(c) || c.Log.Format != containerlog.FormatCRI || c.Log.Truncated {
		t.Fatalf("log artifact %+v, notes %q", c.Log, c.Notes)
	}
	b := blobtest.Read(t, blobs, c.Log.Key)
	if !strings.Contains(string(b), goPanic) || strings.Contains(string(b), "served") {
		t.Errorf("stored excerpt:\n%s", b)
	}
}

// TestTerminationWithoutLog: no log on the node is a note, and the record
// still ships.
func TestTerminationWithoutLog(t *testing.T) {
	pod := newPod("web", 1, restarted(running("containerd://"+cid(2)), "containerd://"+cid(1), 2, "Error", t0))
	blobs, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	startAt(t, Config{Client: fakeClient(pod), Blobs: blobs, LogRoots: containerlog.Roots{Pods: t.TempDir()}}, rec)
	c := rec.next(t)
	if c.Log != nil || !strings.Contains(strings.Join(c.Notes, "\n"), "no container log") {
		t.Errorf("log %+v notes %q", c.Log, c.Notes)
	}
}
