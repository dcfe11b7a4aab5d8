// Package hostfile replaces a file on the host whole or not at all, so a
// reader (the kernel, a collector starting, the agent) sees the old file or
// the new one, never a part.
package hostfile

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Replace writes name through tmp: it removes a stale tmp, creates it anew
// without following a link, fills it with write, fsyncs it when durable,
// and renames it over name. On failure tmp is removed and name is left as
// it was.
func Replace(name, tmp string, perm os.FileMode, durable bool, write func(io.Writer) error) error {
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
