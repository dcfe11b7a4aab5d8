package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/containerlog"
	"github.com/corepipe/corepipe/crashout/crashfile"
	"github.com/corepipe/corepipe/internal/settings"
)

// Recorder stores and publishes a crash that has no spool entry: the
// Agent's ShipRecord.
type Recorder interface {
	ShipRecord(ctx context.Context, c *corepipe.Crash) error
}

// CrashOutputs collects the files Go services write with package crashout
// (runtime/debug.SetCrashOutput): each file of a dead process that holds a
// traceback becomes a crash with its excerpt stored; each file of a process
// that exited cleanly is removed. A file is removed only once its crash is
// durable.
//
// The directory is shared with the tenants' pods, so every file in it is
// hostile: opened without following links, read within the excerpt's
// bounds, and what its header says of the pod is recorded as the process's
// own claim.
type CrashOutputs struct {
	Dir      string
	Node     string
	Blobs    corepipe.BlobStore
	Recorder Recorder
	// Enricher, when set, adds what the node knows of the claimed pod.
	Enricher Enricher
	// Poll is how often the directory is scanned (default 1s).
	Poll time.Duration
	// MaxPerScan bounds the files handled in one scan (default 64): a
	// flood of files delays the rest, it does not stall the agent.
	MaxPerScan int
	Logger     *slog.Logger
}

// crashDirMode lets every container's user create a file in the directory
// and none list or remove another's (sticky, no read bit).
const crashDirMode = 0o1733

// Run scans the directory until ctx is done.
func (co *CrashOutputs) Run(ctx context.Context) error {
	settings.Default(&co.Poll, time.Second)
	if err := os.MkdirAll(co.Dir, 0o755); err != nil {
		return fmt.Errorf("crash-output directory: %w", err)
	}
	if err := os.Chmod(co.Dir, crashDirMode); err != nil {
		return fmt.Errorf("crash-output directory: %w", err)
	}
	t := time.NewTicker(co.Poll)
	defer t.Stop()
	for {
		if _, err := co.Scan(ctx); err != nil && ctx.Err() == nil {
			co.logger().Warn("crash-output scan", "dir", co.Dir, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (co *CrashOutputs) logger() *slog.Logger {
	if co.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return co.Logger
}

// Scan handles the files of dead processes once, and returns how many
// crashes it shipped.
func (co *CrashOutputs) Scan(ctx context.Context) (int, error) {
	d, err := os.Open(co.Dir)
	if err != nil {
		return 0, fmt.Errorf("read crash-output directory: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, fmt.Errorf("read crash-output directory: %w", err)
	}
	limit := co.MaxPerScan
	settings.Default(&limit, 64)
	shipped := 0
	var errs []error
	for _, name := range names {
		if limit == 0 || ctx.Err() != nil {
			break
		}
		if !strings.HasSuffix(name, crashfile.Suffix) {
			continue
		}
		ok, err := co.file(ctx, filepath.Join(co.Dir, name))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if ok {
			limit--
			shipped++
		}
	}
	return shipped, errors.Join(errs...)
}

// file handles one crash file; it reports whether a crash was shipped.
func (co *CrashOutputs) file(ctx context.Context, path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			os.Remove(path)
		}
		return false, nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		os.Remove(path)
		return false, nil
	}
	// The writer holds its lock for as long as it lives.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return false, nil
	}
	log := co.logger().With("file", path)
	br := bufio.NewReaderSize(io.LimitReader(f, crashfile.MaxHeader), crashfile.MaxHeader)
	h, err := crashfile.Read(br)
	if err != nil {
		log.Warn("not a crash file: removed", "err", err)
		os.Remove(path)
		return false, nil
	}
	headerLen, err := headerSize(f)
	if err != nil {
		return false, err
	}
	ex, err := containerlog.ReadExcerptFile(ctx, f, headerLen, containerlog.ExcerptOptions{})
	if err != nil {
		return false, err
	}
	if !ex.Crash {
		// A clean exit: the runtime wrote nothing.
		os.Remove(path)
		return false, nil
	}
	c := co.crashOf(path, fi, h, ex)
	if co.Enricher != nil {
		co.Enricher.Enrich(ctx, c)
	}
	if err := co.Blobs.Put(ctx, c.Log.Key, bytes.NewReader(ex.Text), int64(len(ex.Text))); err != nil {
		return false, fmt.Errorf("store crash output: %w", err)
	}
	if err := co.Recorder.ShipRecord(ctx, c); err != nil {
		return false, err
	}
	if err := os.Remove(path); err != nil {
		return true, fmt.Errorf("remove collected crash file: %w", err)
	}
	log.Info("crash output collected", corepipe.LogKeyCrash, c.ID, "pid", h.PID, "pod", h.Namespace+"/"+h.Pod)
	return true, nil
}

// headerSize is the length of the file's first line, newline included.
func headerSize(f *os.File) (int64, error) {
	buf := make([]byte, crashfile.MaxHeader)
	n, err := f.ReadAt(buf, 0)
	if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
		return int64(i + 1), nil
	}
	if err == nil {
		err = crashfile.ErrNotCrashFile
	}
	return 0, err
}

// crashOf builds the crash of a collected file. Its ID derives from the
// file's name and header, so that an agent restarted before removing the
// file records the same crash, which the queue deduplicates.
func (co *CrashOutputs) crashOf(path string, fi os.FileInfo, h crashfile.Header, ex *containerlog.Excerpt) *corepipe.Crash {
	at := fi.ModTime().UTC()
	sum := sha256.Sum256([]byte("corepipe/crash-output/v1\x00" + filepath.Base(path) + "\x00" + h.StartedAt.String() + "\x00" + fmt.Sprint(h.PID)))
	c := &corepipe.Crash{
		Schema:     corepipe.ManifestSchema,
		ID:         ulid.MustNew(ulid.Timestamp(at), bytes.NewReader(sum[:10])).String(),
		CapturedAt: at,
		Node:       co.Node,
		Process:    corepipe.Process{PID: h.PID, Exe: h.Exe},
		Arch:       h.GOARCH,
		Notes: []string{"reported by the crashed program itself through package crashout (" + filepath.Base(path) +
			"): its pod and build information are its own claim"},
	}
	if h.GoVersion != "" || h.MainModule != "" {
		c.Go = &corepipe.GoInfo{Version: h.GoVersion, MainModule: h.MainModule, MainVersion: h.MainVersion, VCSRevision: h.VCSRevision}
	}
	if h.Pod != "" || h.PodUID != "" {
		c.Container = &corepipe.Container{Namespace: h.Namespace, Pod: h.Pod, PodUID: h.PodUID, Container: h.Container}
	}
	c.Core.Dropped = "no core: the program wrote its traceback through package crashout"
	c.Log = &corepipe.LogArtifact{Source: corepipe.SourceCrashOutput, Path: path, Format: containerlog.FormatRaw,
		Size: int64(len(ex.Text)), Truncated: ex.Truncated, Key: corepipe.LogKey(c)}
	return c
}
