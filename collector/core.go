package collector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

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
	enc  *zstd.Encoder // the encoder its frame was made with
	out  []byte
	done chan struct{}
}

// encoders are the two ways a chunk is compressed. zstd's own encoder
// samples a block's literals and stores them as they are when they look
// random, instead of building a Huffman table that cannot shrink them;
// klauspost's tries the table on every block. Pages of random-looking bytes
// (keys, compressed or encrypted buffers, a heap filled with them) then
// cost it 1.8 times zstd's CPU while the kernel waits, so chunks that
// sample as random go through an encoder that never entropy-codes
// literals (0.5 times zstd's). Matches and zero pages are found alike.
type encoders struct{ full, flat *zstd.Encoder }

func newEncoders(workers int) (encoders, error) {
	opts := []zstd.EOption{
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(workers),
		zstd.WithWindowSize(chunkSize),
		zstd.WithLowerEncoderMem(true),
	}
	full, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		return encoders{}, err
	}
	flat, err := zstd.NewWriter(nil, append(opts, zstd.WithNoEntropyCompression(true))...)
	if err != nil {
		full.Close()
		return encoders{}, err
	}
	return encoders{full: full, flat: flat}, nil
}

func (e encoders) Close() {
	e.full.Close()
	e.flat.Close()
}

// How pick samples a chunk: 8 KiB, as zstd samples literals (HUF_compress's
// check of 2 × 4 KiB), with the same bound on the commonest byte.
const (
	samples    = 32
	sampleSize = 256
)

// pick returns the encoder for the chunk b: flat when its bytes are spread
// so evenly that Huffman coding could not shrink them, that is when no
// byte value is more common in the sample than zstd's own bound allows.
// Samples that are one repeated byte (zero pages) are left out, since the
// match finder turns those into repeats, not literals.
func (e encoders) pick(b []byte) *zstd.Encoder {
	if len(b) < samples*sampleSize {
		return e.full
	}
	var hist [256]int
	n, step := 0, len(b)/samples
	for i := range samples {
		s := b[i*step : i*step+sampleSize]
		if isRun(s) {
			continue
		}
		for _, c := range s {
			hist[c]++
		}
		n += sampleSize
	}
	if n == 0 {
		return e.full
	}
	most := 0
	for _, c := range hist {
		most = max(most, c)
	}
	if most > n>>7+4 {
		return e.full
	}
	return e.flat
}

// isRun reports whether b is one byte repeated.
func isRun(b []byte) bool {
	for _, c := range b[1:] {
		if c != b[0] {
			return false
		}
	}
	return true
}

// streamCore compresses src into dst, keeping at most limit raw bytes
// (limit <= 0: no limit), and releases src (see release) as soon as it has
// read what it keeps: the dying process waits until then, not for the
// last frames to be compressed and written. It neither syncs nor hashes
// dst (see settleCore). Every compressed frame is covered by q (nil: no
// spool limits) before it is written, so the entry never holds more than
// its reservation. It stops at EOF, at the limit, when q refuses, or when
// ctx is done, always leaving a valid zstd stream of res.Size raw bytes.
//
// The reading goroutine only reads, so the kernel's pipe drains as fast as
// the encoders allow; encoders compress chunks in parallel; one writer
// puts the frames in order. Anything else done per byte while the kernel
// waits (the sha256 of the raw core, starting writeback) would compete for
// the same CPUs: it is done afterwards.
func streamCore(ctx context.Context, dst *os.File, src io.Reader, limit int64, q *quota) (coreResult, error) {
	var res coreResult
	defer release(src)
	workers := max(1, min(maxEncoders, runtime.GOMAXPROCS(0)))
	enc, err := newEncoders(workers)
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
				c.enc = enc.pick(c.raw[:c.n])
				c.out = c.enc.EncodeAll(c.raw[:c.n], c.out[:0])
				c.done <- struct{}{}
			}
		})
	}

	// The writer's state; read by this goroutine only after wg.Wait.
	var (
		writeErr error
		quotaCut bool
	)
	stopped := make(chan struct{})
	wg.Go(func() {
		for c := range ordered {
			<-c.done
			if writeErr == nil && !quotaCut {
				last := q != nil && !q.take(int64(len(c.out)))
				if last {
					fitChunk(c, q)
				}
				if c.n > 0 {
					if _, err := dst.Write(c.out); err != nil {
						writeErr = err
					} else {
						res.Size += int64(c.n)
					}
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
	atLimit := false
	if readErr == nil && limit > 0 && read >= limit {
		// Stopped at the limit: one more byte says whether the core was longer.
		var one [1]byte
		n, _ := io.ReadFull(r, one[:])
		atLimit = n > 0
	}
	release(src)
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
		res.Truncated, res.AtLimit = atLimit, atLimit
	case errors.Is(readErr, io.EOF), errors.Is(readErr, io.ErrUnexpectedEOF):
	case ctx.Err() != nil || errors.Is(readErr, os.ErrDeadlineExceeded):
		res.Truncated = true
		res.Why = fmt.Sprintf("capture deadline reached after %d bytes", res.Size)
	default:
		res.Truncated = true
		res.Why = fmt.Sprintf("reading the core from the kernel failed after %d bytes: %v", res.Size, readErr)
	}
	return res, nil
}

// settleCore makes the stored core durable and hashes it, once the kernel
// has let the process go: the fsync and a read back of the frames run side
// by side. The sha256 is of the raw bytes the frames decode to, so it also
// proves the stored stream whole; a stream that does not decode to the
// size written is a write error. Reading back is bounded by what was
// written, from the page cache.
func settleCore(f *os.File, res *coreResult) error {
	synced := make(chan error, 1)
	go func() { synced <- f.Sync() }()
	size, sum, herr := hashFrames(io.NewSectionReader(f, 0, math.MaxInt64))
	if err := <-synced; err != nil {
		return errWrite{err}
	}
	switch {
	case herr != nil:
		return errWrite{fmt.Errorf("read back: %w", herr)}
	case size != res.Size:
		return errWrite{fmt.Errorf("read back %d raw bytes of the %d written", size, res.Size)}
	}
	res.SHA256 = sum
	return nil
}

// hashFrames decodes the zstd stream r in constant memory and returns the
// raw size and sha256.
func hashFrames(r io.Reader) (int64, string, error) {
	d, err := zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(chunkSize))
	if err != nil {
		return 0, "", err
	}
	defer d.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, d, make([]byte, copyBuffer))
	if err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// fitChunk cuts c to what the spool's limits still allow, compressed
// anew, or to nothing. Incompressible data grows by at most a block header
// per 128 KiB plus the frame's header and checksum, which the margin covers.
func fitChunk(c *chunk, q *quota) {
	fit := q.rest()*16383/16384 - 64
	if fit <= 0 {
		c.n = 0
		return
	}
	c.n = int(min(fit, int64(c.n)))
	c.out = c.enc.EncodeAll(c.raw[:c.n], c.out[:0])
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
