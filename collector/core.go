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
	"time"

	"github.com/klauspost/compress/zstd"
)

// Streaming parameters. Memory use is these buffers plus the encoders'
// window and tables, the same for a 1 MiB core as for a 100 GiB one.
const (
	copyBuffer = 256 << 10
	// zstdWindow bounds the encoders' history. Cores are mostly pages that
	// repeat nearby (zero pages, heap spans) so a small window loses little.
	zstdWindow = 1 << 20
	// maxEncoders: a second encoder overlaps compression with reading from
	// the kernel; more only adds memory on a node that is busy crashing.
	maxEncoders = 2
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
}

// errWrite marks failures writing the spool, as opposed to reading the
// kernel's stream: a write failure makes the stored core useless, a read
// failure only ends it early.
type errWrite struct{ err error }

func (e errWrite) Error() string { return "write core: " + e.err.Error() }
func (e errWrite) Unwrap() error { return e.err }

// streamCore compresses src into dst, keeping at most limit raw bytes
// (limit <= 0: no limit), and syncs dst. It stops at EOF, at the limit, or
// when ctx is done, always leaving a complete zstd stream of what was read.
func streamCore(ctx context.Context, dst *os.File, src io.Reader, limit int64) (coreResult, error) {
	var res coreResult
	enc, err := zstd.NewWriter(dst,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(min(maxEncoders, runtime.GOMAXPROCS(0))),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		return res, errWrite{err}
	}
	h := sha256.New()
	buf := make([]byte, copyBuffer)
	r, stop := deadlineReader(ctx, src)
	defer stop()
	var readErr error
	for limit <= 0 || res.Size < limit {
		want := buf
		if limit > 0 {
			want = buf[:min(int64(len(buf)), limit-res.Size)]
		}
		n, err := r.Read(want)
		if n > 0 {
			h.Write(want[:n])
			if _, werr := enc.Write(want[:n]); werr != nil {
				enc.Close()
				return res, errWrite{werr}
			}
			res.Size += int64(n)
		}
		if err != nil {
			readErr = err
			break
		}
	}
	switch {
	case readErr == nil:
		// Stopped at the limit: one more byte says whether the core was longer.
		var one [1]byte
		if n, _ := io.ReadFull(r, one[:]); n > 0 {
			res.Truncated, res.AtLimit = true, true
		}
	case errors.Is(readErr, io.EOF):
	case ctx.Err() != nil || errors.Is(readErr, os.ErrDeadlineExceeded):
		res.Truncated = true
		res.Why = fmt.Sprintf("capture deadline reached after %d bytes", res.Size)
	default:
		res.Truncated = true
		res.Why = fmt.Sprintf("reading the core from the kernel failed after %d bytes: %v", res.Size, readErr)
	}
	if err := enc.Close(); err != nil {
		return res, errWrite{err}
	}
	if err := dst.Sync(); err != nil {
		return res, errWrite{err}
	}
	res.SHA256 = hex.EncodeToString(h.Sum(nil))
	return res, nil
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
	return ctxReader{ctx, src}, stop
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
