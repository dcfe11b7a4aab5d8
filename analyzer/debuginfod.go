package analyzer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/settings"
	"github.com/corepipe/corepipe/symbols"
)

// Defaults of a Debuginfod client.
const (
	DefaultDebuginfodTimeout   = 30 * time.Second
	DefaultDebuginfodMaxSize   = 1 << 30
	DefaultDebuginfodCacheSize = 10 << 30
)

// staleFetch is the age past which a download's temporary file is the
// leftover of an analyzer that died mid-download, and is removed.
const staleFetch = time.Hour

// Debuginfod fetches debug files by GNU build ID from external debuginfod
// servers (elfutils' debuginfod, a distribution's), which the analyzer
// asks after its own symbol store. It is the analyzer, not the analysis
// child, that talks to them: the child reads hostile cores and is kept off
// the network. Each download is bounded in time and size, checked to be
// the debug file of the build ID asked for, and cached by that ID.
type Debuginfod struct {
	// URLs are the servers, asked in order.
	URLs []string
	// Timeout bounds each server's answer, download included (0:
	// DefaultDebuginfodTimeout).
	Timeout time.Duration
	// MaxSize is the largest debug file taken (0: DefaultDebuginfodMaxSize).
	MaxSize int64
	// CacheDir keeps fetched files as .build-id/xx/rest.debug.
	CacheDir string
	// CacheSize bounds CacheDir: after each download the least recently
	// used files are removed until the rest fit, the file just fetched
	// excepted (0: DefaultDebuginfodCacheSize).
	CacheSize int64
	// Client sends the requests; nil is a plain http.Client.
	Client *http.Client
	Logger *slog.Logger
}

// ParseDebuginfodURLs checks the servers given as flags, or, without any,
// those of DEBUGINFOD_URLS (env, space-separated as elfutils reads it).
func ParseDebuginfodURLs(flags []string, env string) ([]string, error) {
	list := flags
	if len(list) == 0 {
		list = strings.Fields(env)
	}
	var out []string
	for _, s := range list {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%w: debuginfod server %q: want http(s)://host[:port][/path]", corepipe.ErrInvalid, s)
		}
		out = append(out, strings.TrimSuffix(u.String(), "/"))
	}
	return out, nil
}

// errNoDebugFile is a server's 404: it does not have the build ID.
var errNoDebugFile = errors.New("no debug file")

// Fetch puts the debug file of GNU build ID id at dst, from the cache or the
// first server that has it, and reports whether it found one. The error
// says why no server answered, when none had it for a reason other than
// not knowing the ID.
func (d *Debuginfod) Fetch(ctx context.Context, id, dst string) (bool, error) {
	if !symbols.ValidGNU(id) {
		return false, fmt.Errorf("%w: GNU build ID %q", corepipe.ErrInvalid, id)
	}
	cached := filepath.Join(d.CacheDir, ".build-id", id[:2], id[2:]+".debug")
	if err := linkOrCopy(cached, dst); err == nil {
		// Its time of last use, which the cache's bound goes by (atime
		// is not kept on a noatime mount).
		now := time.Now()
		_ = os.Chtimes(cached, now, now)
		return true, nil
	}
	var errs []error
	for _, server := range d.URLs {
		err := d.download(ctx, server, id, cached)
		if err == nil {
			if err := linkOrCopy(cached, dst); err != nil {
				return false, fmt.Errorf("debug file of gnu:%s: %w", id, err)
			}
			d.log().Info("debug file fetched from debuginfod", "server", server, "build_id", id)
			d.prune(cached)
			return true, nil
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if !errors.Is(err, errNoDebugFile) {
			d.log().Warn("debuginfod server failed", "server", server, "build_id", id, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
		}
	}
	return false, errors.Join(errs...)
}

// download stores the debug file server has for id at path, once it has
// checked it, or says why not.
func (d *Debuginfod) download(ctx context.Context, server, id, path string) error {
	timeout := d.Timeout
	settings.Default(&timeout, DefaultDebuginfodTimeout)
	max := d.MaxSize
	settings.Default(&max, DefaultDebuginfodMaxSize)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/buildid/"+id+"/debuginfo", nil)
	if err != nil {
		return err
	}
	client := d.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", corepipe.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return errNoDebugFile
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%w: server answered %s", corepipe.ErrUnavailable, resp.Status)
	case resp.ContentLength > max:
		return fmt.Errorf("%w: debug file of %d bytes is over the limit of %d", corepipe.ErrInvalid, resp.ContentLength, max)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("debuginfod cache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fetch-*")
	if err != nil {
		return fmt.Errorf("debuginfod cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(resp.Body, max+1))
	if err == nil && n > max {
		err = fmt.Errorf("%w: debug file is over the limit of %d bytes", corepipe.ErrInvalid, max)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// A server that answers with another build's file, or one without
	// DWARF, would give a report of wrong or missing names.
	ids, err := readIDs(tmp.Name())
	if err != nil || ids.GNU != id {
		return fmt.Errorf("%w: the server's file is not the debug file of gnu:%s", corepipe.ErrInvalid, id)
	}
	if ok, err := symbols.HasDWARF(tmp.Name()); err != nil || !ok {
		return fmt.Errorf("%w: the server's file for gnu:%s has no DWARF", corepipe.ErrInvalid, id)
	}
	return os.Rename(tmp.Name(), path)
}

// prune removes the least recently used files of the cache until the rest
// fit its bound, never keep (the file just fetched), and the temporary
// files of downloads that died. What it cannot read or remove it logs and
// passes over: the cache is only a cache.
func (d *Debuginfod) prune(keep string) {
	limit := d.CacheSize
	settings.Default(&limit, DefaultDebuginfodCacheSize)
	type file struct {
		path string
		size int64
		used time.Time
	}
	var files []file
	var total int64
	root := filepath.Join(d.CacheDir, ".build-id")
	now := time.Now()
	err := filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		switch {
		case strings.HasPrefix(e.Name(), ".fetch-"):
			if now.Sub(info.ModTime()) > staleFetch {
				d.remove(path)
			}
		case path != keep && strings.HasSuffix(e.Name(), ".debug"):
			files = append(files, file{path, info.Size(), info.ModTime()})
			total += info.Size()
		case path == keep:
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		d.log().Warn("debuginfod cache not pruned", "dir", root, "err", err)
		return
	}
	slices.SortFunc(files, func(a, b file) int { return a.used.Compare(b.used) })
	for _, f := range files {
		if total <= limit {
			break
		}
		if d.remove(f.path) {
			total -= f.size
		}
	}
}

func (d *Debuginfod) remove(path string) bool {
	err := os.Remove(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log().Warn("debuginfod cache: cannot remove a file", "path", path, "err", err)
		return false
	}
	return true
}

func (d *Debuginfod) log() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// linkOrCopy puts the file at src at dst: a hard link, which costs no
// copy of a debug file of hundreds of MiB, else a copy.
func linkOrCopy(src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
