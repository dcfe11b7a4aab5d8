// Package apitest serves the API for tests the way `corepipe dev` runs it:
// a real SQLite index and a filesystem blob store behind an httptest
// server, with the crashes a test adds stored where the analyzer puts them.
package apitest

import (
	"bytes"
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/sqlite"
)

// Server is an API server running until the test ends.
type Server struct {
	URL   string
	Index *sqlite.Index
	Blobs *fs.Store
}

// Start serves the API. tokens is the text of a tokens file ("<token>
// <role>" lines); "" turns auth off.
func Start(tb testing.TB, tokens string) *Server {
	tb.Helper()
	dir := tb.TempDir()
	idx, err := sqlite.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		tb.Fatal(err)
	}
	blobs, err := fs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		idx.Close()
		tb.Fatal(err)
	}
	cfg := api.Config{Index: idx, Blobs: blobs}
	if tokens != "" {
		if cfg.Tokens, err = api.ParseTokens(strings.NewReader(tokens)); err != nil {
			idx.Close()
			tb.Fatal(err)
		}
	}
	srv, err := api.New(cfg)
	if err != nil {
		idx.Close()
		tb.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	tb.Cleanup(func() { ts.Close(); idx.Close() })
	return &Server{URL: ts.URL, Index: idx, Blobs: blobs}
}

// Put stores b under key in the blob store.
func (s *Server) Put(tb testing.TB, key string, b []byte) {
	tb.Helper()
	if err := s.Blobs.Put(context.Background(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		tb.Fatal(err)
	}
}

// Add stores r's full report and indexes it, as the analyzer and the index
// follower do. A non-nil core is stored zstd-compressed under the crash's
// core key, and a non-nil exe under the executable key of exeID; r's
// artifacts are set to point at them.
func (s *Server) Add(tb testing.TB, r *corepipe.Report, core, exe []byte, exeID string) {
	tb.Helper()
	if core != nil {
		var z bytes.Buffer
		enc, _ := zstd.NewWriter(&z)
		enc.Write(core)
		enc.Close()
		r.Artifacts.Core.Key = corepipe.CoreKey(&corepipe.Crash{ID: r.ID, CapturedAt: r.CapturedAt, Node: r.Node})
		s.Put(tb, r.Artifacts.Core.Key, z.Bytes())
	}
	if exe != nil {
		r.Artifacts.Executable = corepipe.ExeArtifact{Path: r.Process.Exe, Found: true, Key: corepipe.ExecutableKey(exeID)}
		s.Put(tb, r.Artifacts.Executable.Key, exe)
	}
	var b bytes.Buffer
	if err := r.WriteStored(&b); err != nil {
		tb.Fatal(err)
	}
	s.Put(tb, corepipe.ReportKey(r.ID), b.Bytes())
	if err := s.Index.Upsert(context.Background(), r); err != nil {
		tb.Fatal(err)
	}
}
