package analyzer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/buildid"
	"github.com/corepipe/corepipe/symbols"
)

// DebugDir is the directory, beside the core in an analysis's scratch
// space, where the analyzer puts the executable's debug file from the
// symbol store, laid out as delve looks for it.
const DebugDir = "debug"

// fetchDebugInfo gives an executable without DWARF its debug file from the
// symbol store, else from the external debuginfod servers, in dir's
// DebugDir: <DebugDir>/.build-id/xx/rest.debug by
// the GNU build ID, else <DebugDir>/<exe>.debug by the Go build ID. It
// returns what the report lacks when the store has none ("" when nothing
// is missing).
func (a *Analyzer) fetchDebugInfo(ctx context.Context, exePath, dir string) (lacks string, err error) {
	ok, err := symbols.HasDWARF(exePath)
	if ok || err != nil {
		// An executable that is no readable ELF is the inspection's to
		// refuse, with its own words.
		return "", nil
	}
	ids, err := readIDs(exePath)
	if err != nil || ids.GNU == "" && ids.Go == "" {
		return "symbols missing: the executable has no DWARF and no build ID to find them by", nil
	}
	store := &symbols.Store{Blobs: a.cfg.Blobs}
	var meta *symbols.Meta
	for _, id := range []string{ids.GNU, ids.Go} {
		if id == "" {
			continue
		}
		if meta, err = store.Lookup(ctx, id); err == nil {
			break
		}
		if !errors.Is(err, corepipe.ErrNotFound) {
			return "", err
		}
	}
	if meta == nil && ids.GNU != "" && a.cfg.Debuginfod != nil {
		debug := filepath.Join(dir, DebugDir, ".build-id", ids.GNU[:2], ids.GNU[2:]+".debug")
		found, err := a.cfg.Debuginfod.Fetch(ctx, ids.GNU, debug)
		if found {
			return "", nil
		}
		if err != nil && ctx.Err() != nil {
			return "", err
		}
		// A server that fails makes a degraded report, not a failed
		// one: Fetch has logged why.
	}
	if meta == nil {
		if ids.GNU != "" {
			return "symbols missing: gnu:" + ids.GNU, nil
		}
		return "symbols missing: go:" + ids.Go, nil
	}
	debug := filepath.Join(dir, DebugDir, filepath.Base(exePath)+".debug")
	if meta.GNUBuildID != "" && meta.GNUBuildID == ids.GNU {
		debug = filepath.Join(dir, DebugDir, ".build-id", ids.GNU[:2], ids.GNU[2:]+".debug")
	}
	if err := os.MkdirAll(filepath.Dir(debug), 0o700); err != nil {
		return "", fmt.Errorf("debug file: %w", err)
	}
	if err := a.fetch(ctx, meta.Key, debug, nil); err != nil {
		return "", fmt.Errorf("fetch debug file of %s: %w", meta.IDs(), err)
	}
	return "", nil
}

func readIDs(path string) (buildid.IDs, error) {
	f, err := os.Open(path)
	if err != nil {
		return buildid.IDs{}, err
	}
	defer f.Close()
	return buildid.Read(f)
}

func dirExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}
