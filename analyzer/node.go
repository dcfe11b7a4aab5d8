package analyzer

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/settings"
)

// Local analyses a core where it lies, for a node agent applying the
// fleet's core policy: it must know a crash's signature before deciding
// whether its core leaves the node, and a core that stays still gets its
// full report. It is the analyzer's own inspection (a Child, with its
// limits) on a spooled core, without the symbol store.
type Local struct {
	Inspector Inspector
	// TempDir holds the decompressed core while it is inspected.
	TempDir string
	// MaxCoreSize caps a core's decompressed size (0: DefaultMaxCoreSize).
	MaxCoreSize int64
}

// Analyse inspects the spooled (zstd) core of c with its executable and
// returns the report without its goroutines, and the file holding the
// whole report (positioned at its start), which the caller stores and
// closes. The decompressed core is gone when it returns.
func (l Local) Analyse(ctx context.Context, c *corepipe.Crash, corePath, exePath string) (*corepipe.Report, *os.File, error) {
	dir, err := os.MkdirTemp(l.TempDir, "corepipe-node-"+c.ID+"-")
	if err != nil {
		return nil, nil, fmt.Errorf("scratch space: %w", err)
	}
	defer os.RemoveAll(dir)
	a := Analyzer{cfg: Config{MaxCoreSize: l.MaxCoreSize}}
	settings.Default(&a.cfg.MaxCoreSize, DefaultMaxCoreSize)
	core := filepath.Join(dir, "core")
	zf, err := os.Open(corePath)
	if err != nil {
		return nil, nil, fmt.Errorf("open spooled core: %w", err)
	}
	err = copyOut(zf, "spooled", core, a.coreLimit(c))
	zf.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("decompress core: %w", err)
	}
	out, err := os.OpenFile(filepath.Join(dir, "report.json"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("report file for the analysis: %w", err)
	}
	if err := l.Inspector.Inspect(ctx, c, core, exePath, out); err != nil {
		out.Close()
		return nil, nil, err
	}
	// Checked here as the analyzer checks a child's report; the caller
	// stores the file whole.
	found, _, err := readReport(out)
	if err != nil {
		out.Close()
		return nil, nil, fmt.Errorf("analysis wrote no readable report: %w", err)
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		out.Close()
		return nil, nil, err
	}
	r := corepipe.NewReport(c)
	merge(r, found)
	return r, out, nil
}

// nodeReport takes the report a node's agent made of a core it kept: read
// and checked as a child's report is (the node is no more trusted than a
// core), with what the manifest says taken from the manifest.
func (a *Analyzer) nodeReport(ctx context.Context, c *corepipe.Crash) (*corepipe.Report, *reportFile, error) {
	if !strings.HasPrefix(c.NodeReport, "cores/") || filepath.Clean(c.NodeReport) != c.NodeReport {
		return nil, nil, fmt.Errorf("%w: node report key %.80q is outside cores/", corepipe.ErrInvalid, c.NodeReport)
	}
	dir, err := os.MkdirTemp(a.cfg.TempDir, "corepipe-"+c.ID+"-")
	if err != nil {
		return nil, nil, fmt.Errorf("scratch space: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "report.json")
	rc, err := a.cfg.Blobs.Get(ctx, c.NodeReport)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch node report: %w", err)
	}
	err = copyOut(io.LimitReader(rc, DefaultMaxReport+1), c.NodeReport, path, nil)
	rc.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("fetch node report: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	if st, err := f.Stat(); err == nil && st.Size() > DefaultMaxReport {
		f.Close()
		return nil, nil, fmt.Errorf("%w: node report is over %d MiB", corepipe.ErrInvalid, DefaultMaxReport>>20)
	}
	found, body, err := readReport(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("node report: %w", err)
	}
	r := corepipe.NewReport(c)
	merge(r, found)
	r.Lacks = append(r.Lacks, found.Lacks...)
	return r, body, nil
}
