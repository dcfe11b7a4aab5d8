package collector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe/buildid"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/ctxio"
)

// Executable capture limits. A program that crashes chooses its own
// executable, and the collector runs as root: what the file claims must not
// decide what the collector spends.
const (
	// DefaultMaxExecutableSize is the largest executable hashed or copied
	// when the settings name no limit.
	DefaultMaxExecutableSize = 2 << 30
	// maxHoleBytes is how much of an executable may be holes. Linkers write
	// every byte; a copy made sparse (cp --sparse=always) has holes in
	// the padding between segments, a few MiB at most. More is a file
	// made to cost the collector reading zeros it never stored.
	maxHoleBytes = 64 << 20
	// maxExtents bounds the data extents of a copied executable.
	maxExtents = 1024
)

// identityKey names the cache entry of exe, "" when it cannot be taken.
func identityKey(exe *os.File) string {
	var st unix.Stat_t
	if unix.Fstat(int(exe.Fd()), &st) != nil {
		return ""
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%d %d %d %d.%d %d.%d", st.Dev, st.Ino, st.Size,
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec))
	return hex.EncodeToString(sum[:16])
}

// cachedHash returns the sha256 recorded for exe's identity key.
func cachedHash(root *os.Root, key string) string {
	if key == "" {
		return ""
	}
	f, err := root.OpenFile(path.Join(spool.HashCacheDir, key), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 65)
	n, _ := io.ReadFull(f, b)
	if n != 65 || b[64] != '\n' || !isHexString(b[:64]) {
		return ""
	}
	return string(b[:64])
}

// cacheHash records sum for exe's identity key; best effort.
func cacheHash(root *os.Root, key, sum string) {
	if key == "" {
		return
	}
	if err := root.Mkdir(spool.HashCacheDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return
	}
	tmp := path.Join(spool.HashCacheDir, key+"."+strconv.Itoa(os.Getpid())+spool.TmpSuffix)
	f, err := createExcl(root, tmp)
	if err != nil {
		return
	}
	_, err = f.WriteString(sum + "\n")
	if cerr := f.Close(); err == nil && cerr == nil {
		err = root.Rename(tmp, path.Join(spool.HashCacheDir, key))
	}
	if err != nil {
		root.Remove(tmp)
	}
}

func isHexString(b []byte) bool {
	for _, c := range b {
		if !isHex(c) {
			return false
		}
	}
	return true
}

// buildIDs reads the GNU and Go build IDs of the executable (see package
// buildid for what it reads and its bounds).
func buildIDs(r io.ReaderAt) (gnu, goID string, err error) {
	ids, err := buildid.Read(r)
	return ids.GNU, ids.Go, err
}

// extent is a range of an executable that holds data.
type extent struct{ off, end int64 }

// exeLayout is where the data of an executable is, taken once from the held
// handle so that hashing and copying read the same ranges.
type exeLayout struct {
	size    int64
	extents []extent
	holes   int64
}

// layoutOf maps the data of exe with SEEK_DATA/SEEK_HOLE and refuses files
// over limit or made mostly of holes. A filesystem without the seeks
// reports one extent, the whole file.
func layoutOf(exe *os.File, limit int64) (exeLayout, error) {
	fi, err := exe.Stat()
	if err != nil {
		return exeLayout{}, fmt.Errorf("executable not read: %w", err)
	}
	l := exeLayout{size: fi.Size()}
	if limit > 0 && l.size > limit {
		return l, fmt.Errorf("executable of %d bytes is over the limit of %d: not hashed or copied", l.size, limit)
	}
	fd := int(exe.Fd())
	for off := int64(0); off < l.size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			// No SEEK_DATA here: take the file as all data.
			l.extents, l.holes = []extent{{0, l.size}}, 0
			return l, nil
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole > l.size {
			hole = l.size
		}
		if len(l.extents) == maxExtents {
			return l, fmt.Errorf("executable of %d bytes has more than %d data extents: not hashed or copied", l.size, maxExtents)
		}
		l.extents = append(l.extents, extent{data, hole})
		off = hole
	}
	var data int64
	for _, e := range l.extents {
		data += e.end - e.off
	}
	l.holes = l.size - data
	if l.holes > maxHoleBytes {
		return l, fmt.Errorf("executable claims %d bytes but holds only %d (sparse): not hashed or copied", l.size, data)
	}
	return l, nil
}

// zeros feeds holes to the hash.
var zeros [copyBuffer]byte

// read streams exe as l describes it: data extents to data, holes as
// zeros to hole (which may be nil). It stops when ctx is done.
func (l exeLayout) read(ctx context.Context, exe *os.File, data func(off int64, b []byte) error, hole func(n int64)) error {
	buf := make([]byte, copyBuffer)
	pos := int64(0)
	for _, e := range append(l.extents, extent{l.size, l.size}) {
		if hole != nil && e.off > pos {
			hole(e.off - pos)
		}
		r := ctxio.Reader(ctx, io.NewSectionReader(exe, e.off, e.end-e.off))
		off := e.off
		for off < e.end {
			n, err := io.ReadFull(r, buf[:min(int64(len(buf)), e.end-off)])
			if n > 0 {
				if err := data(off, buf[:n]); err != nil {
					return err
				}
				off += int64(n)
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("executable shrank to %d bytes while read", off)
			}
			if err != nil {
				return err
			}
		}
		pos = e.end
	}
	return nil
}

// hashHoles writes n zero bytes to h.
func hashHoles(h io.Writer) func(int64) {
	return func(n int64) {
		for n > 0 {
			k := min(n, int64(len(zeros)))
			h.Write(zeros[:k])
			n -= k
		}
	}
}

// hashExecutable returns the sha256 of the held executable.
func hashExecutable(ctx context.Context, exe *os.File, l exeLayout) (string, error) {
	h := sha256.New()
	err := l.read(ctx, exe, func(_ int64, b []byte) error { h.Write(b); return nil }, hashHoles(h))
	if err != nil {
		return "", fmt.Errorf("hash executable: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyExecutable copies the held executable into dst, hashing it, and
// syncs dst. Holes stay holes: only the data extents are written, and the
// file is extended to its size at the end.
func copyExecutable(ctx context.Context, dst *os.File, exe *os.File, l exeLayout) (size int64, sum string, err error) {
	h := sha256.New()
	var written int64
	err = l.read(ctx, exe, func(off int64, b []byte) error {
		h.Write(b)
		if _, err := dst.WriteAt(b, off); err != nil {
			return err
		}
		written = max(written, off+int64(len(b)))
		return nil
	}, hashHoles(h))
	if err == nil && written < l.size {
		err = dst.Truncate(l.size)
		written = l.size
	}
	if err == nil {
		err = dst.Sync()
	}
	if err != nil {
		return written, "", fmt.Errorf("copy executable: %w", err)
	}
	return written, hex.EncodeToString(h.Sum(nil)), nil
}
