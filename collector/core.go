package collector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe/internal/ctxio"
)

// Streaming parameters. Memory use is a fixed set of chunk buffers plus the
// encoders' tables, the same for a 1 MiB core as for a 100 GiB one.
const (
	copyBuffer = 256 << 10
	// chunkSize is how many raw bytes become one zstd frame. Frames are
	// independent, so chunks compress in parallel as zstd -T0 does, and a
	// core cut short (spool full, deadline) is still a valid stream of the
	// frames written. Cores repeat nearby (zero pages, heap spans), so a
	// 1 MiB window loses little ratio, and it keeps the encoders' tables
	// small and in cache.
	chunkSize = 1 << 20
	// maxEncoders bounds the compressing goroutines: beyond a few, a node
	// that is busy crashing only loses memory to them.
	maxEncoders = 4
	// writebackEvery starts the kernel's writeback of what was written so
	// far, so the final fsync finds little left to do.
	writebackEvery = 8 << 20
)

// coreResult is what streaming the core produced.
type coreResult struct {
	Size      int64 // raw bytes kept
	SHA256    string
	Truncated bool
	// AtLimit is set when the core was longer than the limit and was cut
	// there; otherwise Why says what ended a truncated stream early.
	AtLimit bool
	Why     string
	// SpoolFull is set when the spool's limits cut the core.
	SpoolFull bool
}

// errWrite marks failures writing the spool, as opposed to reading the
// kernel's stream: a write failure makes the stored core useless, a read
// failure only ends it early.
type errWrite struct{ err error }

func (e errWrite) Error() string { return "write core: " + e.err.Error() }
func (e errWrite) Unwrap() error { return e.err }

// chunk is one frame's worth of the core on its way through the pipeline.
type chunk struct {
	raw  []byte
	n    int
	out  []byte
	done chan struct{}
}

// streamCore compresses src into dst, keeping at most limit raw bytes
// (limit <= 0: no limit). It does not sync dst: the caller releases the
// kernel's pipe first, since the dying process waits until it is closed.
// Every compressed frame is covered
// by q (nil: no spool limits) before it is written, so the entry never
// holds more than its reservation. It stops at EOF, at the limit, when q
// refuses, or when ctx is done, always leaving a valid zstd stream whose
// size and sha256 are those of the raw bytes it holds.
//
// The reading goroutine only reads, so the kernel's pipe drains as fast as
// the encoders allow; encoders compress chunks in parallel; one writer
// puts the frames in order, hashing each chunk as it goes out.
func streamCore(ctx context.Context, dst *os.File, src io.Reader, limit int64, q *quota) (coreResult, error) {
	var res coreResult
	workers := max(1, min(maxEncoders, runtime.GOMAXPROCS(0)))
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(workers),
		zstd.WithWindowSize(chunkSize),
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		return res, errWrite{err}
	}
	defer enc.Close()

	slots := workers + 2
	free := make(chan *chunk, slots)
	for range slots {
		free <- &chunk{raw: make([]byte, chunkSize), done: make(chan struct{}, 1)}
	}
	work := make(chan *chunk, slots)
	ordered := make(chan *chunk, slots)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c := range work {
				c.out = enc.EncodeAll(c.raw[:c.n], c.out[:0])
				c.done <- struct{}{}
			}
		})
	}

	// The writer's state; read by this goroutine only after wg.Wait.
	h := sha256.New()
	var (
		writeErr error
		quotaCut bool
		written  int64
		synced   int64
	)
	stopped := make(chan struct{})
	wg.Go(func() {
		for c := range ordered {
			<-c.done
			if writeErr == nil && !quotaCut {
				last := q != nil && !q.take(int64(len(c.out)))
				if last {
					fitChunk(enc, c, q)
				}
				if c.n > 0 {
					if _, err := dst.Write(c.out); err != nil {
						writeErr = err
					} else {
						h.Write(c.raw[:c.n])
						res.Size += int64(c.n)
						written += int64(len(c.out))
					}
				}
				if written-synced >= writebackEvery {
					// Best effort: a filesystem without it syncs at the end.
					unix.SyncFileRange(int(dst.Fd()), synced, written-synced, unix.SYNC_FILE_RANGE_WRITE)
					synced = written
				}
				quotaCut = last
				if writeErr != nil || quotaCut {
					close(stopped)
				}
			}
			free <- c
		}
	})

	r, stopDeadline := deadlineReader(ctx, src)
	defer stopDeadline()
	var readErr error
	var read int64
read:
	for limit <= 0 || read < limit {
		var c *chunk
		select {
		case <-stopped:
			break read
		case c = <-free:
		}
		select {
		case <-stopped:
			// Both were ready: reading more would only be thrown away.
			free <- c
			break read
		default:
		}
		want := int64(chunkSize)
		if limit > 0 {
			want = min(want, limit-read)
		}
		n, err := io.ReadFull(r, c.raw[:want])
		if n > 0 {
			c.n = n
			read += int64(n)
			work <- c
			ordered <- c
		} else {
			free <- c
		}
		if err != nil {
			readErr = err
			break
		}
	}
	close(work)
	close(ordered)
	wg.Wait()

	switch {
	case writeErr != nil:
		return res, errWrite{writeErr}
	case quotaCut:
		res.Truncated, res.SpoolFull = true, true
		res.Why = fmt.Sprintf("spool full (%s) after %d bytes", q.why, res.Size)
	case readErr == nil:
		// Stopped at the limit: one more byte says whether the core was longer.
		var one [1]byte
		if n, _ := io.ReadFull(r, one[:]); n > 0 {
			res.Truncated, res.AtLimit = true, true
		}
	case errors.Is(readErr, io.EOF), errors.Is(readErr, io.ErrUnexpectedEOF):
	case ctx.Err() != nil || errors.Is(readErr, os.ErrDeadlineExceeded):
		res.Truncated = true
		res.Why = fmt.Sprintf("capture deadline reached after %d bytes", res.Size)
	default:
		res.Truncated = true
		res.Why = fmt.Sprintf("reading the core from the kernel failed after %d bytes: %v", res.Size, readErr)
	}
	res.SHA256 = hex.EncodeToString(h.Sum(nil))
	return res, nil
}

// fitChunk cuts c to what the spool's limits still allow, compressed
// anew, or to nothing. Incompressible data grows by at most a block header
// per 128 KiB plus the frame's header and checksum, which the margin covers.
func fitChunk(enc *zstd.Encoder, c *chunk, q *quota) {
	fit := q.rest()*16383/16384 - 64
	if fit <= 0 {
		c.n = 0
		return
	}
	c.n = int(min(fit, int64(c.n)))
	c.out = enc.EncodeAll(c.raw[:c.n], c.out[:0])
	if !q.take(int64(len(c.out))) {
		c.n = 0
	}
}

// deadlineReader makes reads from src end when ctx does; stop releases it.
// A pipe opened non-blocking (see cmd/corepipe-collector) supports read
// deadlines, which also interrupt a read in progress: a dump stuck in the
// kernel (a hung FUSE mapping) must not hold the collector past its
// deadline. Other readers are checked between reads.
func deadlineReader(ctx context.Context, src io.Reader) (io.Reader, func() bool) {
	stop := func() bool { return false }
	if d, ok := src.(interface{ SetReadDeadline(time.Time) error }); ok {
		// Files that cannot poll return an error here; the checks between
		// reads still apply to them.
		if dl, ok := ctx.Deadline(); ok {
			d.SetReadDeadline(dl)
		}
		stop = context.AfterFunc(ctx, func() { d.SetReadDeadline(time.Now()) })
	}
	return ctxio.Reader(ctx, src), stop
}
