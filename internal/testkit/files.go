package testkit

import (
	"io/fs"
	"path/filepath"
	"sync"
	"time"
)

// FilesSize sums the sizes of the regular files under dir, as du
// --apparent-size would: what a spool holds, counted independently of the
// collector's own accounting.
func FilesSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// SamplePeak samples FilesSize(dir) every interval until the returned stop
// is called, and stop returns the largest size it saw: what a spool held
// at its fullest during a burst of crashes.
func SamplePeak(dir string, every time.Duration) (stop func() int64) {
	var peak int64
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			peak = max(peak, FilesSize(dir))
			select {
			case <-done:
				return
			case <-time.After(every):
			}
		}
	})
	return func() int64 {
		close(done)
		sampler.Wait()
		return peak
	}
}
