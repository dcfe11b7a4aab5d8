package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
	"github.com/klauspost/compress/zstd"
)

// maxCoreWindow bounds the memory one core download can take in the zstd
// decoder. The collector's encoder uses windows of a few MiB; a frame asking
// for more than this is not one of ours.
const maxCoreWindow = 256 << 20

// firstChunk is how much of an artifact is read before the response starts,
// so that a missing or corrupt object still gets an error status instead of
// a 200 that stops short.
const firstChunk = 64 << 10

func (s *Server) listCrashes(w http.ResponseWriter, r *http.Request) error {
	_, crashes, next, err := listOf(r, wire.ParseCrashQuery, s.index.Crashes)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.CrashList{Crashes: redact(r, crashes), NextCursor: next})
	return nil
}

// getCrash serves the stored report as clients know it (WriteJSON), one
// goroutine at a time, its identical stacks written out again for every
// goroutine that has them: a report of 100 000 goroutines is over 100 MB of
// JSON, and the server holds only its distinct stacks. A viewer's copy has
// its command line scrubbed.
func (s *Server) getCrash(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	rc, err := s.indexedReport(r.Context(), id)
	if err != nil {
		return err
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(storedErr(id, serveStored(pw, rc, !seesSecrets(r))))
	}()
	defer func() {
		// Unblocks the writer if the client went away, then waits for it
		// before rc is closed under it.
		pr.Close()
		<-done
	}()
	return s.stream(w, r, pr, download("application/json", ""))
}

// serveStored writes the stored report in src to w as WriteJSON does,
// scrubbed by Redacted with redact.
func serveStored(w io.Writer, src io.Reader, redact bool) error {
	scrub := func(r *corepipe.Report) *corepipe.Report {
		if redact {
			return r.Redacted()
		}
		return r
	}
	var jw *corepipe.JSONWriter
	rep, err := corepipe.ReadStoredEach(src, func(head *corepipe.Report, g corepipe.Goroutine) error {
		if jw == nil {
			var err error
			if jw, err = corepipe.NewJSONWriter(w, scrub(head), false); err != nil {
				return err
			}
		}
		return jw.Goroutine(&g)
	})
	switch {
	case err != nil:
		return err
	case jw == nil:
		return scrub(rep).WriteJSON(w, false)
	}
	return jw.Close(scrub(rep))
}

// storedErr says what went wrong reading the stored report of id: bytes
// that are not a report are the server's fault (500), not the client's.
func storedErr(id string, err error) error {
	if errors.Is(err, corepipe.ErrInvalid) {
		return fmt.Errorf("crash %s: the stored report is damaged: %v", id, err)
	}
	if err != nil {
		return fmt.Errorf("crash %s: %w", id, err)
	}
	return nil
}

// defaultGoroutinePage is the page of goroutines a client gets when it
// does not say: one that shows a report of 100 000 goroutines asks for
// them a page at a time, of up to wire.MaxLimit.
const defaultGoroutinePage = 100

// goroutinePage is one page of a report's goroutines, in the report's
// order; NextOffset is absent on the last page.
type goroutinePage struct {
	Goroutines []corepipe.Goroutine `json:"goroutines"`
	Total      int                  `json:"total"`
	Offset     int                  `json:"offset"`
	NextOffset int                  `json:"next_offset,omitempty"`
}

// getGoroutines serves a page of a report's goroutines (offset, limit),
// holding only that page and the report's distinct stacks while it reads.
func (s *Server) getGoroutines(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	q := r.URL.Query()
	offset, limit := 0, defaultGoroutinePage
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: offset %q: want a non-negative integer", corepipe.ErrInvalid, corepipe.Clip(v, 64))
		}
		offset = n
	}
	if q.Get("limit") != "" {
		n, err := wire.Limit(q)
		if err != nil {
			return err
		}
		limit = n
	}
	rc, err := s.indexedReport(r.Context(), id)
	if err != nil {
		return err
	}
	defer rc.Close()
	p := goroutinePage{Goroutines: []corepipe.Goroutine{}, Offset: offset}
	_, err = corepipe.ReadStoredEach(rc, func(_ *corepipe.Report, g corepipe.Goroutine) error {
		if p.Total >= offset && p.Total < offset+limit {
			p.Goroutines = append(p.Goroutines, g)
		}
		p.Total++
		return nil
	})
	if err != nil {
		return storedErr(id, err)
	}
	if offset+limit < p.Total {
		p.NextOffset = offset + limit
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// suidOnlyAdmin refuses the artifacts of a setuid or otherwise privileged
// program (the kernel's suid_dumpable=2 mode) to anyone below admin: its
// memory may hold another user's secrets, which a debugger of the program's
// own team has no claim to.
func (s *Server) suidOnlyAdmin(r *http.Request, sum *corepipe.Report, what string) error {
	if sum.Process.Dumpable != 2 || identityOf(r).role >= RoleAdmin {
		return nil
	}
	return fmt.Errorf("%w: crash %s is of a privileged (setuid) process, dumped under suid_dumpable=2: its %s is for the admin role only", corepipe.ErrForbidden, sum.ID, what)
}

func (s *Server) getCore(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	sum, err := s.crash(r.Context(), id)
	if err != nil {
		return err
	}
	if err := s.suidOnlyAdmin(r, sum, "core"); err != nil {
		return err
	}
	core := sum.Artifacts.Core
	if core.Key == "" {
		msg := "no core was stored"
		if core.Dropped != "" {
			msg = "the core was dropped: " + core.Dropped
		}
		if loc := core.Where(s.now()); core.Location != nil {
			msg = "the core is " + loc.String()
			if loc.State == corepipe.CoreOnNode {
				msg += "; POST /api/v1/crashes/" + id + "/core/request asks for it"
			}
		}
		return fmt.Errorf("%w: crash %s: %s", corepipe.ErrNotFound, id, msg)
	}
	rc, err := s.openArtifact(r.Context(), id, "core", "cores/", core.Key)
	if err != nil {
		return err
	}
	defer rc.Close()
	// One decoder goroutine and a bounded window keep a download at constant
	// memory however large the core is.
	dec, err := zstd.NewReader(rc, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(maxCoreWindow))
	if err != nil {
		return fmt.Errorf("crash %s: open core decoder: %w", id, err)
	}
	defer dec.Close()
	return s.stream(w, r, dec, download("application/octet-stream", "core-"+id))
}

func (s *Server) getExecutable(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	sum, err := s.crash(r.Context(), id)
	if err != nil {
		return err
	}
	if err := s.suidOnlyAdmin(r, sum, "executable"); err != nil {
		return err
	}
	exe := sum.Artifacts.Executable
	if exe.Key == "" {
		return fmt.Errorf("%w: crash %s: the executable was not captured", corepipe.ErrNotFound, id)
	}
	rc, err := s.openArtifact(r.Context(), id, "executable", "executables/", exe.Key)
	if errors.Is(err, corepipe.ErrNotFound) && sum.Artifacts.Core.Where(s.now()).State == corepipe.CoreExpired {
		// Retention deletes an executable once no kept core needs it.
		err = fmt.Errorf("%w: crash %s: the executable expired with the core", corepipe.ErrNotFound, id)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	name := "executable-" + id
	if p := exe.Path; p != "" {
		name = corepipe.SafeName(path.Base(p))
	}
	return s.stream(w, r, rc, download("application/octet-stream", name))
}

// crash checks id before anything else touches it (it becomes part of blob
// keys) and returns its indexed summary.
func (s *Server) crash(ctx context.Context, id string) (*corepipe.Report, error) {
	if err := corepipe.CheckID(id); err != nil {
		return nil, err
	}
	sum, err := s.index.Crash(ctx, id)
	if errors.Is(err, corepipe.ErrNotFound) {
		return nil, fmt.Errorf("%w: crash %s is not indexed", corepipe.ErrNotFound, id)
	}
	return sum, err
}

// openReport opens the full report of an indexed crash. A crash is indexed
// before its analysis ends, so a missing report is expected and said plainly.
// indexedReport opens the stored report of a crash the index holds: an ID
// the index does not know is not found, whatever the blob store has.
func (s *Server) indexedReport(ctx context.Context, id string) (io.ReadCloser, error) {
	if _, err := s.crash(ctx, id); err != nil {
		return nil, err
	}
	return s.openReport(ctx, id)
}

func (s *Server) openReport(ctx context.Context, id string) (io.ReadCloser, error) {
	rc, err := s.blobs.Get(ctx, corepipe.ReportKey(id))
	if errors.Is(err, corepipe.ErrNotFound) {
		return nil, fmt.Errorf("%w: crash %s is indexed but its report is not in the blob store (analysis pending or lost)", corepipe.ErrNotFound, id)
	}
	if err != nil {
		return nil, corepipe.Wrap(err, "crash %s: open report", id)
	}
	return rc, nil
}

// openArtifact opens a blob named by a report. The key came from the
// pipeline, not the client, but the index can be rebuilt from anything in
// the store: only keys under the artifact prefixes are read.
func (s *Server) openArtifact(ctx context.Context, id, what, prefix, key string) (io.ReadCloser, error) {
	if !strings.HasPrefix(key, prefix) || path.Clean(key) != key {
		return nil, fmt.Errorf("crash %s: %s key %q is outside %s", id, what, key, prefix)
	}
	rc, err := s.blobs.Get(ctx, key)
	if errors.Is(err, corepipe.ErrNotFound) {
		return nil, fmt.Errorf("%w: crash %s: the %s is indexed but not in the blob store", corepipe.ErrNotFound, id, what)
	}
	if err != nil {
		return nil, corepipe.Wrap(err, "crash %s: open %s", id, what)
	}
	return rc, nil
}

// download is the header of a response of contentType, saved as filename
// when that is set.
func download(contentType, filename string) http.Header {
	h := http.Header{"Content-Type": {contentType}}
	if filename != "" {
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": filename}))
	}
	return h
}

// stream copies src to the client under header. An error reading the first
// chunk is returned, before anything of header is sent, to be answered as
// an error; after that the status is sent, and the connection is aborted so
// that the client sees a failed transfer, never a short file that looks
// complete.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, src io.Reader, header http.Header) error {
	buf := make([]byte, firstChunk)
	n, err := io.ReadFull(src, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return corepipe.Wrap(err, "crash %s: read", r.PathValue("id"))
	}
	h := w.Header()
	maps.Copy(h, header)
	if err != nil {
		// The whole object fit in the first chunk: its length is known.
		h.Set("Content-Length", fmt.Sprint(n))
	}
	// The server's WriteTimeout would cut a multi-GiB download short:
	// each chunk gets its own deadline instead, so only a client that
	// stops reading is dropped.
	rc := http.NewResponseController(w)
	out := writerFunc(func(p []byte) (int, error) {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		return w.Write(p)
	})
	w.WriteHeader(http.StatusOK)
	if _, werr := out.Write(buf[:n]); werr != nil || err != nil {
		return nil
	}
	if _, err := io.CopyBuffer(out, src, buf); err != nil {
		if r.Context().Err() == nil {
			s.log.ErrorContext(r.Context(), "download failed mid-stream",
				slog.String("path", r.URL.Path), slog.String(corepipe.LogKeyCrash, r.PathValue("id")), slog.Any("err", err))
		}
		panic(http.ErrAbortHandler)
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
