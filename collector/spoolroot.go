package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// openSpoolRoot opens the spool for the collector, creating it 0700 when
// missing. A symlinked spool is refused: the collector runs as root and the
// link could point anywhere. Every later write goes through the returned
// root, which cannot be led outside the directory.
func openSpoolRoot(dir string) (*os.Root, error) {
	if dir == "" {
		return nil, errors.New("spool: no directory configured")
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("spool: %s is a symlink; refusing to write through it", dir)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("spool: %s is not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	// The path may have been swapped for a link between Lstat and open.
	if rfi, err := root.Stat("."); err != nil || !os.SameFile(fi, rfi) {
		root.Close()
		return nil, fmt.Errorf("spool: %s changed while opening it", dir)
	}
	return root, nil
}

// createExcl creates a new file in root: never an existing one, never
// through a symlink, readable by root only. The handle also reads, so that
// what was written can be read back (the core is hashed that way).
func createExcl(root *os.Root, name string) (*os.File, error) {
	return root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
}

// syncDir makes the entries of a directory (new files, renames) durable.
func syncDir(root *os.Root, name string) error {
	d, err := root.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
