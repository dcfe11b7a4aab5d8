package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
	"github.com/corepipe/corepipe/internal/settings"
	"github.com/corepipe/corepipe/symbols"
)

// SymbolsPath is where debug files are uploaded and listed.
const SymbolsPath = wire.SymbolsPath

// symbolRoutes registers the symbol store's API and, over the same store
// and auth, the debuginfod protocol, so that DEBUGINFOD_URLS pointing at
// this server works for dlv, gdb and debuginfod-find.
//
// Debug files are downloaded with the debugger role, as executables are: an
// unstripped upload is the whole program, with whatever its data holds.
// Uploading needs it too: a debug file decides what every report of its
// build says.
func (s *Server) symbolRoutes(mux *http.ServeMux, api func(string, Role, handler)) {
	api(SymbolsPath, RoleViewer, s.listSymbols)
	api(SymbolsPath+"/{id...}", RoleViewer, s.getSymbols)
	mux.Handle("PUT "+SymbolsPath+"/{id...}", s.guard(RoleDebugger, false, s.putSymbols))
	mux.Handle("GET /buildid/{id}/{what}", s.guard(RoleDebugger, false, s.debuginfod))
	mux.Handle("GET /buildid/{id}/section/{name}", s.guard(RoleDebugger, false, s.debuginfodSection))
}

// symbolUpload reports whether r is an upload, whose body is bounded by the
// symbol store's limit instead of maxBody.
func symbolUpload(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, SymbolsPath+"/")
}

func (s *Server) symbolStore() *symbols.Store {
	return &symbols.Store{Blobs: s.blobs, MaxSize: s.maxSymbolSize}
}

func (s *Server) putSymbols(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !symbols.ValidID(id) {
		return fmt.Errorf("%w: %q is not a build ID", corepipe.ErrInvalid, corepipe.Clip(id, 64))
	}
	store := s.symbolStore()
	max := store.MaxSize
	settings.Default(&max, symbols.DefaultMaxSize)
	if r.ContentLength > max {
		return fmt.Errorf("%w: debug file of %d bytes is larger than the limit of %d MiB", corepipe.ErrInvalid, r.ContentLength, max>>20)
	}
	// The server's ReadTimeout would cut a large upload short: each read
	// gets its own deadline instead, so only a client that stalls is
	// dropped.
	rc := http.NewResponseController(w)
	body := http.MaxBytesReader(w, r.Body, max)
	src := readerFunc(func(p []byte) (int, error) {
		_ = rc.SetReadDeadline(time.Now().Add(readTimeout))
		return body.Read(p)
	})
	meta, stored, err := store.Put(r.Context(), id, r.URL.Query().Get("name"), src)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		err = fmt.Errorf("%w: debug file is larger than the limit of %d MiB", corepipe.ErrInvalid, max>>20)
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	res := wire.Uploaded{Stored: stored, Meta: meta}
	if stored {
		status = http.StatusCreated
		res.Reanalysis = s.reanalyzeBuild(r.Context(), meta, identityOf(r).describe())
	}
	writeJSON(w, status, res)
	return nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// maxSymbolList bounds one listing.
const maxSymbolList = 1000

func (s *Server) listSymbols(w http.ResponseWriter, r *http.Request) error {
	limit := maxSymbolList
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxSymbolList {
			return fmt.Errorf("%w: limit %q: want 1 to %d", corepipe.ErrInvalid, corepipe.Clip(v, 64), maxSymbolList)
		}
		limit = n
	}
	list := wire.SymbolList{Symbols: []*symbols.Meta{}}
	err := s.symbolStore().List(r.Context(), limit, func(m *symbols.Meta) error {
		list.Symbols = append(list.Symbols, m)
		return nil
	})
	if err != nil {
		return corepipe.Wrap(err, "list debug files")
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) getSymbols(w http.ResponseWriter, r *http.Request) error {
	meta, err := s.lookupSymbols(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, meta)
	return nil
}

func (s *Server) lookupSymbols(ctx context.Context, id string) (*symbols.Meta, error) {
	if !symbols.ValidID(id) {
		return nil, fmt.Errorf("%w: %q is not a build ID", corepipe.ErrNotFound, corepipe.Clip(id, 64))
	}
	meta, err := s.symbolStore().Lookup(ctx, id)
	if errors.Is(err, corepipe.ErrNotFound) {
		return nil, fmt.Errorf("%w: no debug file for build ID %s", corepipe.ErrNotFound, id)
	}
	return meta, err
}

// debuginfod answers /buildid/ID/debuginfo and /buildid/ID/executable as
// elfutils' server does: the file, with its size and name in
// X-DEBUGINFOD-SIZE and X-DEBUGINFOD-FILE, or 404.
func (s *Server) debuginfod(w http.ResponseWriter, r *http.Request) error {
	id, what := r.PathValue("id"), r.PathValue("what")
	if what != "debuginfo" && what != "executable" {
		return fmt.Errorf("%w: no debuginfod route %s", corepipe.ErrNotFound, corepipe.Clip(r.URL.Path, 64))
	}
	meta, err := s.lookupSymbols(r.Context(), id)
	if what == "executable" && (err == nil && !meta.Executable || errors.Is(err, corepipe.ErrNotFound)) {
		// An --only-keep-debug upload has no code: the program itself
		// may be in the store as a crash's captured executable.
		return s.captured(w, r, id)
	}
	if err != nil {
		return err
	}
	rc, err := s.symbolStore().Open(r.Context(), meta)
	if err != nil {
		return err
	}
	defer rc.Close()
	return s.serveDebuginfod(w, r, rc, meta.Size, meta.Name)
}

func (s *Server) captured(w http.ResponseWriter, r *http.Request, id string) error {
	notFound := fmt.Errorf("%w: no executable for build ID %s", corepipe.ErrNotFound, corepipe.Clip(id, 64))
	if !symbols.ValidGNU(id) {
		return notFound
	}
	key := corepipe.ExecutableKey(id)
	size, err := s.blobs.Stat(r.Context(), key)
	if err == nil {
		var rc io.ReadCloser
		if rc, err = s.blobs.Get(r.Context(), key); err == nil {
			defer rc.Close()
			return s.serveDebuginfod(w, r, rc, size, id)
		}
	}
	if errors.Is(err, corepipe.ErrNotFound) {
		err = notFound
	}
	return corepipe.Wrap(err, "executable %s", id)
}

// debuginfodSection answers /buildid/ID/section/NAME: the raw bytes of one
// section of the debug file, read through to its offset (the blob store has
// no ranges; sections of interest are near the end only in small files).
func (s *Server) debuginfodSection(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	meta, err := s.lookupSymbols(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	sec, ok := meta.Section(name)
	if !ok {
		return fmt.Errorf("%w: the debug file of %s has no section %q with contents", corepipe.ErrNotFound, meta.IDs(), corepipe.Clip(name, 64))
	}
	rc, err := s.symbolStore().Open(r.Context(), meta)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, int64(sec.Offset)); err != nil {
		return corepipe.Wrap(err, "read debug file of %s", meta.IDs())
	}
	return s.serveDebuginfod(w, r, io.LimitReader(rc, int64(sec.Size)), int64(sec.Size), meta.Name)
}

func (s *Server) serveDebuginfod(w http.ResponseWriter, r *http.Request, src io.Reader, size int64, name string) error {
	h := download("application/octet-stream", "")
	h.Set("X-DEBUGINFOD-SIZE", strconv.FormatInt(size, 10))
	h.Set("X-DEBUGINFOD-FILE", corepipe.SafeName(name))
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	return s.stream(w, r, src, h)
}
