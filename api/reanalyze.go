// Re-analysis over HTTP: POST /api/v1/reanalyze queues kept crashes for
// the analyzers again, for instance once the symbols of a stripped build
// were uploaded. It needs RoleTriage: it reveals nothing a viewer cannot
// read, but costs the analyzers' time.

package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
	"github.com/corepipe/corepipe/symbols"
)

// Republisher queues a crash again for analysis (queue/nats's Queue is
// one). why becomes part of the message ID: a retry of the same publish is
// dropped.
type Republisher interface {
	RepublishCrash(ctx context.Context, c *corepipe.Crash, why string) error
}

// Bounds of one re-analysis request: the analyzers take a crash at a time
// per worker, so a call queues a page, and the next page is the caller's
// to ask for.
const (
	DefaultReanalyze = 100
	MaxReanalyze     = 1000
	// maxManifest bounds a stored manifest read back: the collector's are
	// a few KiB.
	maxManifest = 4 << 20
)

var errNoRepublisher = &corepipe.Error{Code: corepipe.EUNAVAILABLE, Message: "this server has no queue to the analyzers: re-analysis is off"}

func (s *Server) postReanalyze(w http.ResponseWriter, r *http.Request) error {
	if err := s.checkWrite(r); err != nil {
		return err
	}
	if s.republish == nil {
		return errNoRepublisher
	}
	var q wire.ReanalyzeRequest
	if err := decodeBody(r, &q); err != nil {
		return err
	}
	candidates, next, err := s.reanalysisCandidates(r.Context(), q)
	if err != nil {
		return err
	}
	res, err := s.requeue(r.Context(), candidates, identityOf(r).describe())
	if err != nil {
		return err
	}
	res.NextCursor = next
	writeJSON(w, http.StatusOK, res)
	return nil
}

// requeue queues again those of candidates that can be analysed again, and
// says why it skipped the others. It stops at the first crash the queue or
// the blob store fails on.
func (s *Server) requeue(ctx context.Context, candidates []*corepipe.Report, by string) (wire.ReanalyzeResult, error) {
	res := wire.ReanalyzeResult{Matched: len(candidates), Queued: []wire.QueuedCrash{}, Skipped: []wire.SkippedCrash{}}
	// One nonce per request: a retried publish is dropped, a later
	// request for the same crash is not.
	why := corepipe.NewID(s.now())
	for _, sum := range candidates {
		c, reason, err := s.keptCrash(ctx, sum)
		if err != nil {
			return res, fmt.Errorf("crash %s: %w (%d crashes queued before it)", sum.ID, err, len(res.Queued))
		}
		if reason != "" {
			res.Skipped = append(res.Skipped, wire.SkippedCrash{ID: sum.ID, Reason: reason})
			continue
		}
		c.Revision = sum.Revision + 1
		if err := s.republish.RepublishCrash(ctx, c, fmt.Sprintf("r%d-%s", c.Revision, why)); err != nil {
			return res, fmt.Errorf("queue crash %s for re-analysis: %w (%d crashes queued before it)", sum.ID, err, len(res.Queued))
		}
		s.log.InfoContext(ctx, "crash queued for re-analysis", corepipe.LogKeyCrash, sum.ID, "revision", c.Revision, "by", by)
		res.Queued = append(res.Queued, wire.QueuedCrash{ID: sum.ID, Revision: c.Revision})
	}
	return res, nil
}

// reanalyzeBuild queues again the kept crashes of a build whose debug file
// was just stored, the newest MaxReanalyze of each of its build IDs: their
// reports were made without it. It never fails the upload: what it could
// not do is logged, and corepipe reanalyze can do it again.
func (s *Server) reanalyzeBuild(ctx context.Context, meta *symbols.Meta, by string) *wire.ReanalyzeResult {
	if s.republish == nil {
		return nil
	}
	var candidates []*corepipe.Report
	seen := map[string]bool{}
	for _, id := range []string{meta.GNUBuildID, meta.GoBuildID} {
		if id == "" {
			continue
		}
		crashes, _, err := s.index.Crashes(ctx, corepipe.CrashFilter{BuildID: id, Limit: MaxReanalyze})
		if err != nil {
			s.log.WarnContext(ctx, "crashes of an uploaded build not re-analysed", "build_id", id, "err", err)
			return nil
		}
		for _, c := range crashes {
			if !seen[c.ID] && len(candidates) < MaxReanalyze {
				seen[c.ID] = true
				candidates = append(candidates, c)
			}
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	res, err := s.requeue(ctx, candidates, by)
	if err != nil {
		s.log.WarnContext(ctx, "crashes of an uploaded build not all re-analysed", "build_ids", meta.IDs(), "err", err)
	}
	return &res
}

// reanalysisCandidates are the indexed crashes q names, at most its limit.
func (s *Server) reanalysisCandidates(ctx context.Context, q wire.ReanalyzeRequest) ([]*corepipe.Report, string, error) {
	switch {
	case q.Limit < 0 || q.Limit > MaxReanalyze:
		return nil, "", fmt.Errorf("%w: limit %d: want 1 to %d crashes per request", corepipe.ErrInvalid, q.Limit, MaxReanalyze)
	case q.Limit == 0:
		q.Limit = DefaultReanalyze
	}
	if q.ID != "" {
		if q.Signature != "" || q.BuildID != "" || q.Cursor != "" {
			return nil, "", fmt.Errorf("%w: a crash id names one crash: give it without signature, build_id or cursor", corepipe.ErrInvalid)
		}
		sum, err := s.crash(ctx, q.ID)
		if err != nil {
			return nil, "", err
		}
		return []*corepipe.Report{sum}, "", nil
	}
	if q.Signature == "" && q.BuildID == "" {
		return nil, "", fmt.Errorf("%w: say which crashes to analyse again: an id, a signature or a build_id", corepipe.ErrInvalid)
	}
	f := corepipe.CrashFilter{Signature: q.Signature, Limit: q.Limit, Cursor: q.Cursor}
	if q.BuildID != "" {
		id, err := parseBuildID(q.BuildID)
		if err != nil {
			return nil, "", err
		}
		f.BuildID = id
	}
	return s.index.Crashes(ctx, f)
}

// parseBuildID reads a build ID as `corepipe symbols ls` prints it
// ("gnu:HEX", "go:ID") or bare.
func parseBuildID(s string) (string, error) {
	id, ok := strings.CutPrefix(s, "gnu:")
	if ok && symbols.ValidGNU(id) {
		return id, nil
	}
	if !ok {
		id, _ = strings.CutPrefix(s, "go:")
		if symbols.ValidID(id) {
			return id, nil
		}
	}
	return "", fmt.Errorf("%w: build ID %q: want gnu:HEX, go:ID or the bare ID", corepipe.ErrInvalid, corepipe.Clip(s, 64))
}

// keptCrash returns the stored manifest of the crash sum summarises, when
// its core and executable are still stored, or why it cannot be analysed
// again. An error is the blob store's, which may pass.
func (s *Server) keptCrash(ctx context.Context, sum *corepipe.Report) (*corepipe.Crash, string, error) {
	core, exe := sum.Artifacts.Core, sum.Artifacts.Executable
	switch {
	case sum.Status == corepipe.StatusPending:
		return nil, "its first analysis has not finished", nil
	case core.Key == "" && core.Dropped != "":
		return nil, "no core: the collector dropped it (" + core.Dropped + ")", nil
	case core.Key == "":
		return nil, "no core was stored (its report is from " + corepipe.SourceName(sum.Source) + ")", nil
	case exe.Key == "":
		return nil, "the executable was not captured", nil
	case !keyUnder(core.Key, "cores/") || !keyUnder(exe.Key, "executables/"):
		return nil, "its artifacts' keys are outside the store's prefixes", nil
	}
	for _, a := range []struct{ what, key string }{{"core", core.Key}, {"executable", exe.Key}} {
		if _, err := s.blobs.Stat(ctx, a.key); errors.Is(err, corepipe.ErrNotFound) {
			return nil, "the " + a.what + " is no longer in the blob store", nil
		} else if err != nil {
			return nil, "", corepipe.Wrap(err, "stat %s", a.what)
		}
	}
	key := corepipe.ManifestKey(&corepipe.Crash{ID: sum.ID, CapturedAt: sum.CapturedAt, Node: sum.Node})
	rc, err := s.blobs.Get(ctx, key)
	if errors.Is(err, corepipe.ErrNotFound) {
		return nil, "its manifest is not in the blob store", nil
	}
	if err != nil {
		return nil, "", corepipe.Wrap(err, "open manifest")
	}
	defer rc.Close()
	var c corepipe.Crash
	if err := json.NewDecoder(io.LimitReader(rc, maxManifest)).Decode(&c); err != nil {
		s.log.WarnContext(ctx, "stored manifest unreadable", corepipe.LogKeyCrash, sum.ID, "err", err)
		return nil, "its stored manifest is unreadable", nil
	}
	if c.ID != sum.ID {
		return nil, "its stored manifest is not this crash's", nil
	}
	// The manifest is as the node first shipped it; the index has where
	// the artifacts that were analysed are.
	c.Core.Key, c.Executable.Key = core.Key, exe.Key
	return &c, "", nil
}

func keyUnder(key, prefix string) bool {
	return strings.HasPrefix(key, prefix) && path.Clean(key) == key
}
