// Package crilog writes container logs the way a node's kubelet and
// containerd do, for tests that have no kubelet: CRI lines with
// RFC 3339 timestamps and stream tags, lines longer than 16 KiB split into
// "P" partials ended by an "F", rotation to <attempt>.log.<timestamp> with
// all but the newest rotation gzipped, and the /var/log/containers link.
package crilog

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// MaxLine is containerd's maximum log line: longer lines are split.
const MaxLine = 16 << 10

// Run is one container run's log.
type Run struct {
	PodsRoot, ContainersRoot          string
	Namespace, Pod, PodUID, Container string
	ContainerID                       string // bare, without "containerd://"
	Attempt                           int
	// MaxSize rotates the file when it grows past it (0: never).
	MaxSize int64
	// Now gives the timestamps; time.Now when nil.
	Now func() time.Time
}

// Writer writes one run's log.
type Writer struct {
	run  Run
	mu   sync.Mutex
	f    *os.File
	size int64
	path string
	rot  int
}

// Open creates the run's log file and its link.
func Open(run Run) (*Writer, error) {
	if run.Now == nil {
		run.Now = time.Now
	}
	dir := filepath.Join(run.PodsRoot, fmt.Sprintf("%s_%s_%s", run.Namespace, run.Pod, run.PodUID), run.Container)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w := &Writer{run: run, path: filepath.Join(dir, fmt.Sprintf("%d.log", run.Attempt))}
	if err := w.open(); err != nil {
		return nil, err
	}
	if run.ContainersRoot != "" {
		if err := os.MkdirAll(run.ContainersRoot, 0o755); err != nil {
			return nil, err
		}
		link := filepath.Join(run.ContainersRoot, fmt.Sprintf("%s_%s_%s-%s.log", run.Pod, run.Namespace, run.Container, run.ContainerID))
		os.Remove(link)
		if err := os.Symlink(w.path, link); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	w.f, w.size = f, 0
	return nil
}

// Path is the current log file.
func (w *Writer) Path() string { return w.path }

// Stream returns a writer for "stdout" or "stderr" that logs each line it
// is given as containerd would.
func (w *Writer) Stream(stream string) io.Writer { return &streamWriter{w: w, stream: stream} }

type streamWriter struct {
	w      *Writer
	stream string
	buf    []byte
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			break
		}
		if err := s.w.line(s.stream, s.buf[:i]); err != nil {
			return 0, err
		}
		s.buf = s.buf[i+1:]
	}
	return len(p), nil
}

func (w *Writer) line(stream string, text []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		tag, part := "F", text
		if len(text) > MaxLine {
			tag, part = "P", text[:MaxLine]
		}
		rec := fmt.Sprintf("%s %s %s %s\n", w.run.Now().UTC().Format(time.RFC3339Nano), stream, tag, part)
		n, err := w.f.WriteString(rec)
		w.size += int64(n)
		if err != nil {
			return err
		}
		if w.run.MaxSize > 0 && w.size >= w.run.MaxSize {
			if err := w.rotate(); err != nil {
				return err
			}
		}
		if tag == "F" {
			return nil
		}
		text = text[MaxLine:]
	}
}

// rotate renames the file as the kubelet does and gzips the rotation
// before the newest.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return err
	}
	w.rot++
	// Timestamps of one second's resolution would collide in a fast test:
	// the kubelet's format, with the rotation's number as its seconds.
	stamp := w.run.Now().UTC().Format("20060102-1504") + fmt.Sprintf("%02d", w.rot%60) + fmt.Sprintf("%03d", w.rot)
	rotated := w.path + "." + stamp
	if err := os.Rename(w.path, rotated); err != nil {
		return err
	}
	matches, _ := filepath.Glob(w.path + ".*")
	for _, m := range matches {
		if m == rotated || filepath.Ext(m) == ".gz" {
			continue
		}
		if err := gzipFile(m); err != nil {
			return err
		}
	}
	return w.open()
}

func gzipFile(path string) error {
	in, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(in)
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(path+".gz", b.Bytes(), 0o640); err != nil {
		return err
	}
	return os.Remove(path)
}

// Close closes the current file.
func (w *Writer) Close() error { return w.f.Close() }
