package containerlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/gotrace"
	"github.com/corepipe/corepipe/internal/ctxio"
	"github.com/corepipe/corepipe/internal/settings"
)

// Excerpt is the part of a log that holds its last crash: the program's
// last lines before it, then the runtime's traceback.
type Excerpt struct {
	// Text is the excerpt as plain text lines, the runtime's stream only
	// where the log tells streams apart.
	Text []byte
	// Crash is set when the log holds a Go crash; without one, Text is
	// the log's last lines.
	Crash bool
	// Format is the log's format; Path the newest file read.
	Format, Path string
	// Truncated is set when the crash was longer than the excerpt keeps.
	Truncated bool
}

// Limits of an excerpt; zero fields take the defaults.
type ExcerptOptions struct {
	// MaxBytes bounds Text (default 4 MiB).
	MaxBytes int
	// Context is how many of the program's lines before the crash are
	// kept (default 50).
	Context int
	// MaxRead bounds how much of the log's end is read (default 256 MiB):
	// a crash is at the end of its run's log.
	MaxRead int64
}

func (o ExcerptOptions) withDefaults() ExcerptOptions {
	settings.Default(&o.MaxBytes, 4<<20)
	settings.Default(&o.Context, 50)
	settings.Default(&o.MaxRead, 256<<20)
	return o
}

// gzipRatio is what a gzipped rotation is assumed to expand by when
// deciding how many files the read budget reaches back to.
const gzipRatio = 8

// ReadExcerpt reads the ends of files (oldest first, as Files returns them)
// and keeps the last crash in them.
func ReadExcerpt(ctx context.Context, files []string, o ExcerptOptions) (*Excerpt, error) {
	o = o.withDefaults()
	// Walk back from the newest file until the budget is spent.
	first, offset := len(files), int64(0)
	budget := o.MaxRead
	for i := len(files) - 1; i >= 0 && budget > 0; i-- {
		fi, err := os.Stat(files[i])
		if err != nil {
			continue
		}
		size := fi.Size()
		if strings.HasSuffix(files[i], ".gz") {
			size *= gzipRatio
		}
		first = i
		if size > budget && !strings.HasSuffix(files[i], ".gz") {
			offset = fi.Size() - budget
		}
		budget -= size
	}
	k := newKeeper(o)
	for i := first; i < len(files); i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		off := int64(0)
		if i == first {
			off = offset
		}
		if err := k.file(ctx, files[i], off); err != nil {
			return nil, err
		}
	}
	ex := k.excerpt()
	if len(files) > 0 {
		ex.Path = files[len(files)-1]
	}
	return ex, nil
}

// ReadExcerptFile reads the end of one open plain-text file (a
// crash-output file) from byte from on, at most MaxRead bytes of it.
func ReadExcerptFile(ctx context.Context, f *os.File, from int64, o ExcerptOptions) (*Excerpt, error) {
	o = o.withDefaults()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	k := newKeeper(o)
	k.format = FormatRaw
	if err := k.open(ctx, f, false, max(from, fi.Size()-o.MaxRead)); err != nil {
		return nil, err
	}
	ex := k.excerpt()
	ex.Path = f.Name()
	return ex, nil
}

// ReadExcerptFrom reads one stream (a pasted log, a crash-output file).
func ReadExcerptFrom(ctx context.Context, r io.Reader, format string, o ExcerptOptions) (*Excerpt, error) {
	k := newKeeper(o.withDefaults())
	if err := k.stream(ctx, r, format); err != nil {
		return nil, err
	}
	return k.excerpt(), nil
}

// keeper holds the lines of the crash being read and the context before it.
type keeper struct {
	o         ExcerptOptions
	p         *gotrace.Parser
	crashes   int
	ring      []string // the last lines before any crash
	next      int
	crash     bytes.Buffer
	truncated bool
	format    string
}

func newKeeper(o ExcerptOptions) *keeper {
	return &keeper{o: o, p: gotrace.NewParser(gotrace.Options{MaxGoroutines: 1, MaxFrames: 2})}
}

func (k *keeper) file(ctx context.Context, path string, off int64) error {
	// Logs lie in directories the tenant's processes may write to: a link
	// swapped in after the listing is not followed.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	return k.open(ctx, f, strings.HasSuffix(path, ".gz"), off)
}

// open reads f from off, or a gzipped f whole.
func (k *keeper) open(ctx context.Context, f *os.File, gz bool, off int64) error {
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: log %s is not a regular file", corepipe.ErrInvalid, f.Name())
	}
	var r io.Reader = f
	if gz {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil // a rotation cut short while gzipping: skip it
		}
		defer zr.Close()
		r = zr
	} else if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("seek log: %w", err)
		}
	}
	return k.stream(ctx, r, k.format)
}

func (k *keeper) stream(ctx context.Context, r io.Reader, format string) error {
	d, err := eachStderr(ctx, r, format, func(l Line) { k.line(l.Text) })
	if err != nil && ctx.Err() != nil {
		return err
	}
	// Any other error is a damaged tail (a gzip cut short): it ends this
	// file, not the excerpt.
	if k.format == "" {
		k.format = d.Format()
	}
	return nil
}

// eachStderr decodes r and calls fn with each line of the program's error
// stream, the runtime's (every line, where the log does not tell streams
// apart). Every read checks ctx, for one line may be gigabytes long: once
// ctx ends it returns ctx's error, else the decoder's first error but EOF.
// It returns the decoder too, which knows the format it read.
func eachStderr(ctx context.Context, r io.Reader, format string, fn func(Line)) (*Decoder, error) {
	d := NewDecoder(ctxio.Reader(ctx, r), format)
	for {
		l, err := d.Next()
		if err == io.EOF {
			return d, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return d, ctx.Err()
			}
			return d, err
		}
		if l.Stream != Stdout {
			fn(l)
		}
	}
}

func (k *keeper) line(l string) {
	k.p.Line(l)
	if n := k.p.Crashes(); n != k.crashes {
		k.crashes = n
		k.crash.Reset()
		k.truncated = false
		// The lines before it belong to the excerpt: the program's last
		// words and the runtime's "runtime: …" preludes.
		for i := range len(k.ring) {
			if s := k.ring[(k.next+i)%len(k.ring)]; s != "" {
				k.add(s)
			}
		}
		k.ring, k.next = k.ring[:0], 0
	}
	if k.crashes > 0 {
		k.add(l)
	}
	if len(k.ring) < k.o.Context {
		k.ring = append(k.ring, l)
		return
	}
	k.ring[k.next] = l
	k.next = (k.next + 1) % len(k.ring)
}

func (k *keeper) add(l string) {
	if k.crash.Len()+len(l)+1 > k.o.MaxBytes {
		k.truncated = true
		return
	}
	k.crash.WriteString(l)
	k.crash.WriteByte('\n')
}

func (k *keeper) excerpt() *Excerpt {
	ex := &Excerpt{Format: k.format, Truncated: k.truncated, Crash: k.crashes > 0}
	if ex.Crash {
		ex.Text = bytes.Clone(k.crash.Bytes())
		return ex
	}
	var b bytes.Buffer
	for i := range len(k.ring) {
		if s := k.ring[(k.next+i)%len(k.ring)]; s != "" || b.Len() > 0 {
			b.WriteString(s + "\n")
		}
	}
	ex.Text = b.Bytes()
	return ex
}

// Parse decodes a log of any format (format "" detects it) and parses the
// last Go crash in it, the runtime's stream only where the log tells
// streams apart.
func Parse(ctx context.Context, r io.Reader, format string, o gotrace.Options) (*corepipe.Report, error) {
	p := gotrace.NewParser(o)
	cut := false
	_, err := eachStderr(ctx, r, format, func(l Line) {
		cut = cut || l.Cut
		p.Line(l.Text)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("read log: %w", err)
	}
	rep, err := p.Report()
	if err != nil {
		return nil, err
	}
	if cut {
		rep.Lacks = append(rep.Lacks, "the ends of lines longer than the log reader keeps")
	}
	return rep, nil
}
