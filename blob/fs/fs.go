// Package fs is the BlobStore on a local directory, used by `corepipe dev` and
// single-node setups: one file per key, written so that a crash or power loss
// leaves either the old object or the new one, never a torn one.
package fs

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/internal/blobkey"
	"github.com/corepipe/corepipe/internal/ctxio"
)

// tmpPrefix names in-flight uploads. Keys whose elements start with it are
// refused so that List can skip temp files without hiding real objects.
const tmpPrefix = ".corepipe-tmp-"

// Cores and executables hold secrets of the crashed processes: only the
// store's own user reads them (the API and analyzer run as that user), not
// its group.
const (
	dirPerm  = 0o700
	filePerm = 0o600
)

var _ corepipe.BlobDeleter = (*Store)(nil)

// Store keeps each blob as a file under a root directory.
type Store struct {
	dir string
}

// Open returns a Store rooted at dir, creating it if needed.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fs blob store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, dirPerm); err != nil {
		return nil, fmt.Errorf("fs blob store: %w", err)
	}
	return &Store{dir: abs}, nil
}

// root opens the store's directory for one operation. Every path goes
// through an os.Root so that no key and no symlink planted in the tree can
// reach outside it; opening it per operation keeps Store free of a lifecycle.
func (s *Store) root() (*os.Root, error) {
	r, err := os.OpenRoot(s.dir)
	if err != nil {
		return nil, fmt.Errorf("fs blob store: %w", err)
	}
	return r, nil
}

// rootFor checks key and opens the root for one operation on it.
func (s *Store) rootFor(key string) (*os.Root, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	return s.root()
}

func checkKey(key string) error {
	if err := blobkey.Check(key); err != nil {
		return err
	}
	for elem := range strings.SplitSeq(key, "/") {
		if strings.HasPrefix(elem, tmpPrefix) {
			return fmt.Errorf("%w blob key %q: an element starts with %q, reserved for uploads", corepipe.ErrInvalid, key, tmpPrefix)
		}
	}
	return nil
}

// Put writes r to a temp file next to key, syncs it, and renames it over key,
// so readers see the old object or the whole new one.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	root, err := s.rootFor(key)
	if err != nil {
		return err
	}
	defer root.Close()

	dir := path.Dir(key)
	if err := mkdirs(root, dir); err != nil {
		return s.putError(key, err)
	}
	tmp := path.Join(dir, tmpPrefix+rand.Text())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, filePerm)
	if err != nil {
		return s.putError(key, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			root.Remove(tmp)
		}
	}()

	if err := copyN(ctx, f, r, size); err != nil {
		return s.putError(key, err)
	}
	if err := f.Sync(); err != nil {
		return s.putError(key, err)
	}
	if err := f.Close(); err != nil {
		return s.putError(key, err)
	}
	if err := root.Rename(tmp, key); err != nil {
		return s.putError(key, err)
	}
	if err := syncDir(root, dir); err != nil {
		return s.putError(key, err)
	}
	return nil
}

// copyN copies exactly size bytes (all of r when size is -1), checking ctx
// between reads: a multi-GiB core must stop promptly on shutdown.
func copyN(ctx context.Context, w io.Writer, r io.Reader, size int64) error {
	src := ctxio.Reader(ctx, r)
	if size >= 0 {
		src = io.LimitReader(src, size)
	}
	n, err := io.Copy(w, src)
	if err != nil {
		return err
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%w: reader ended after %d of %d bytes", corepipe.ErrInvalid, n, size)
	}
	return nil
}

// mkdirs creates dir and its parents one element at a time, syncing the
// parent of each directory it creates: a new directory entry is not durable
// until its parent is synced, and Put promises durability on return.
func mkdirs(root *os.Root, dir string) error {
	if dir == "." {
		return nil
	}
	parent := "."
	for elem := range strings.SplitSeq(dir, "/") {
		p := path.Join(parent, elem)
		err := root.Mkdir(p, dirPerm)
		switch {
		case err == nil:
			if err := syncDir(root, parent); err != nil {
				return err
			}
		case !errors.Is(err, os.ErrExist):
			return err
		}
		parent = p
	}
	return nil
}

func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Get opens key for reading. Symlinks are not objects: the store never
// writes them, and os.Root keeps any that appear from leading outside.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	root, err := s.rootFor(key)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	if err := statRegular(root, key); err != nil {
		return nil, s.lookupError("get", key, err)
	}
	f, err := root.OpenFile(key, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, s.lookupError("get", key, err)
	}
	return f, nil
}

// Stat returns the size of key.
func (s *Store) Stat(ctx context.Context, key string) (int64, error) {
	root, err := s.rootFor(key)
	if err != nil {
		return 0, err
	}
	defer root.Close()

	fi, err := root.Lstat(key)
	if err == nil && !fi.Mode().IsRegular() {
		err = os.ErrNotExist
	}
	if err != nil {
		return 0, s.lookupError("stat", key, err)
	}
	return fi.Size(), nil
}

// Delete removes key. A missing key is no error, as on S3: a sweep that
// stopped half way can run again.
func (s *Store) Delete(ctx context.Context, key string) error {
	root, err := s.rootFor(key)
	if err != nil {
		return err
	}
	defer root.Close()

	if err := statRegular(root, key); err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return s.lookupError("delete", key, err)
	}
	if err := root.Remove(key); err != nil && !errors.Is(err, os.ErrNotExist) {
		return &corepipe.Error{Code: corepipe.EINTERNAL, Message: "the blob store could not delete the object",
			Err: fmt.Errorf("fs blob store %s: delete %s: %w", s.dir, key, err)}
	}
	return nil
}

func statRegular(root *os.Root, key string) error {
	fi, err := root.Lstat(key)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return os.ErrNotExist
	}
	return nil
}

// List calls fn for every key under prefix in lexical byte order, the order
// S3 lists in, so callers see the same sequence from either store.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string) error) error {
	if err := blobkey.CheckPrefix(prefix); err != nil {
		return err
	}
	root, err := s.root()
	if err != nil {
		return err
	}
	defer root.Close()

	// Only the directory holding the prefix's last, possibly partial,
	// element can contain matches.
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	return s.walk(ctx, root, start, prefix, fn)
}

func (s *Store) walk(ctx context.Context, root *os.Root, dir, prefix string, fn func(string) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := root.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// Nothing under the prefix, or removed while we listed: as on S3,
		// that is an empty listing, not an error.
		return nil
	}
	if err != nil {
		return fmt.Errorf("fs blob store %s: list %s: %w", s.dir, dir, err)
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("fs blob store %s: list %s: %w", s.dir, dir, err)
	}

	// Sorting a directory as name+"/" makes this depth-first walk visit
	// keys in the byte order of the whole key: "a.txt" < "a/b" because
	// '.' < '/', although "a" < "a.txt".
	type entry struct {
		key string
		dir bool
	}
	list := make([]entry, 0, len(entries))
	for _, e := range entries {
		key := path.Join(dir, e.Name())
		switch {
		case e.IsDir():
			if strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				list = append(list, entry{key + "/", true})
			}
		case e.Type().IsRegular() && !strings.HasPrefix(e.Name(), tmpPrefix):
			if strings.HasPrefix(key, prefix) {
				list = append(list, entry{key, false})
			}
		}
	}
	slices.SortFunc(list, func(a, b entry) int { return cmp.Compare(a.key, b.key) })

	for _, e := range list {
		if e.dir {
			err = s.walk(ctx, root, strings.TrimSuffix(e.key, "/"), prefix, fn)
		} else {
			err = fn(e.key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// putError and lookupError say to clients what failed, and only in the
// detail, for the log, where: the store's path and the key.
func (s *Store) putError(key string, err error) error {
	return &corepipe.Error{Code: corepipe.ErrorCode(err), Message: "the blob store could not write the object",
		Err: fmt.Errorf("fs blob store %s: put %s: %w", s.dir, key, err)}
}

// lookupError translates a failed lookup of key into the domain's sentinels:
// a missing file, or a file where the key needs a directory, is no object.
func (s *Store) lookupError(op, key string, err error) error {
	e := &corepipe.Error{Code: corepipe.EINTERNAL, Message: "the blob store could not read the object"}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		e.Code, e.Message, err = corepipe.ENOTFOUND, "no such object in the blob store", corepipe.ErrNotFound
	}
	e.Err = fmt.Errorf("fs blob store %s: %s %s: %w", s.dir, op, key, err)
	return e
}
